"""The receiving node (``dicomcrypt serve``): a Storage SCP that verifies and restores what it files.

Usable in-process (tests, the demo) and behind the CLI::

    rx = Receiver(ReceiverConfig(ae_title="RECEIVER", port=0, keys=KeyRing.load(["site.key"]),
                                 out=Path("/data/incoming")))
    rx.start()          # returns at once; rx.port is the bound port
    rx.studies()        # {study UID: StudyCounts(received, stored, refused, series, instances, forwarded)}
    rx.stop()           # stops accepting, lets instances in flight finish, then closes

With ``forward=``, each accepted instance goes to a persistent queue in the spool folder before it
is answered (:mod:`dicomcrypt.net.forward_queue`) and a drain thread delivers it
(:class:`~dicomcrypt.net.forward.QueueDrain`). With ``http=``, ``/metrics``, ``/healthz`` and
``/studies`` are served (:mod:`dicomcrypt.net.http_status`) from this receiver's own metrics.

This module owns the association life cycle (presentation contexts, allow-list, TLS, limits,
graceful stop) and the per-instance log line; the accept path that bounds each connection
(TLS handshake deadline, per-peer limit, PDU deadlines) is :mod:`dicomcrypt.net.server`'s, what
happens to an instance is :mod:`dicomcrypt.net.store_handler`'s job, run in a pool of worker
processes (:mod:`dicomcrypt.net.restore_pool`), where it is filed :mod:`dicomcrypt.net.storage`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import register_uid, uid_to_service_class
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import time, invisible to mypy

from dicomcrypt.crypto import KeyRing
from dicomcrypt.dicom.derived import check_uid_root
from dicomcrypt.dicom.output_syntax import OutputSyntax, check_output_syntax
from dicomcrypt.errors import InvalidInputError, ReceiverConfigError
from dicomcrypt.logsafe import escape
from dicomcrypt.limits import DEFAULT_IMAGE_MB, DEFAULT_MODEL_MEGAPIXELS, DecodeLimits
from dicomcrypt.net import status as st
from dicomcrypt.net.address import Peer, validate_ae_title
from dicomcrypt.net.contexts import RETIRED_IMAGE_STORAGE
from dicomcrypt.net.forward import Forwarder, QueueDrain, RetryPolicy
from dicomcrypt.net.forward_queue import ForwardQueue
from dicomcrypt.net.health import check_health
from dicomcrypt.net.http_status import StatusServer
from dicomcrypt.net.metrics import ReceiverMetrics
from dicomcrypt.net.restore_pool import RestorePool, discard_partial_data_set, handle_received
from dicomcrypt.runner.worker import usable_cpus
from dicomcrypt.net.server import ConnectionLimits, GuardedServer
from dicomcrypt.net.storage import DUPLICATE_POLICIES, DuplicatePolicy, Quarantine
from dicomcrypt.net.store_handler import InstanceResult, StoreHandler
from dicomcrypt.net.studies import StudyCounts, StudyLedger
from dicomcrypt.status import comment

__all__ = ["Receiver", "ReceiverConfig", "StudyCounts"]

LOG = logging.getLogger("dicomcrypt.serve")

_P_DATA_TF = 0x04
_RESPONSE_FLUSH_S = 0.3
"""After the last response is handed to pynetdicom, time for its socket thread to send it."""
_MAX_PDU_BYTES = 4 * 1024 * 1024
"""Largest PDU a peer may announce. We offer :data:`_RECEIVE_PDU_BYTES` for P-DATA;
association requests are a few kB. A peer announcing more is cut before it is read."""
_RECEIVE_PDU_BYTES = 1024 * 1024
"""The maximum PDU length we announce (pynetdicom's default is 16 kB): a 512x512 CT arrives in
one PDU instead of 33, each of which costs Python work on both sides (issue 14)."""
_MIB = 1024 * 1024


@dataclass(frozen=True)
class ReceiverConfig:
    """Everything a receiver needs; ``serve``'s options map one to one onto these fields.

    The defaults here are ``serve``'s too: an option set neither on its command line nor in its
    config file is left out, so the field's default applies (cli/serve.py ``_receiver_config``).
    """

    ae_title: str = "RECEIVER"
    host: str = "0.0.0.0"
    port: int = 11112
    """0 lets the OS pick a free port (see :attr:`Receiver.port`)."""
    keys: KeyRing | None = None
    """Needed to restore; optional for ``store="encrypted"`` (then also used to authenticate)."""
    out: Path | None = None
    """Root of the study/series/instance tree; ``None`` for a forward-only gateway."""
    store: Literal["restored", "encrypted"] = "restored"
    forward: Peer | None = None
    allowed_aets: frozenset[str] = frozenset()
    """Calling AE titles allowed to associate; empty allows any."""
    require_called_aet: bool = True
    """Refuse an association whose called AE title is not ``ae_title`` (Orthanc's
    DicomCheckCalledAet): a typo in a sender's configuration is reported, not silently accepted."""
    ssl_context: ssl.SSLContext | None = None
    quarantine: Path | None = None
    """Default: ``out/quarantine``, or ``spool/quarantine`` for a forward-only gateway."""
    duplicates: DuplicatePolicy = "keep-first"
    forward_ssl_context: ssl.SSLContext | None = None
    accept_plain: bool = False
    """File plain (unencrypted) images as received instead of refusing them (0xC005)."""
    max_associations: int = 10
    stop_timeout: float = 60.0
    """How long :meth:`Receiver.stop` waits for instances in flight before closing anyway."""
    forward_timeout: float = 30.0
    max_associations_per_peer: int = 4
    """Connections one peer host may hold at once (handshaking or associated); more are closed."""
    tls_handshake_timeout: float = 10.0
    """Seconds a client has to complete the TLS handshake, in the connection's own thread."""
    pdu_timeout: float = 30.0
    """Seconds within which each PDU, once started, must arrive whole (a trickling peer is cut),
    and the association request after connecting."""
    idle_timeout: float = 60.0
    """Seconds without a PDU before an established association is aborted."""
    association_timeout: float = 3600.0
    """Ceiling on one association's life, however busy; the peer may associate again."""
    max_instance_mb: int = 512
    """Largest instance (MiB of P-DATA) accepted; a bigger one aborts its association."""
    quarantine_max_mb: int = 1024
    """Size cap of the quarantine folder (MiB); the oldest records go first."""
    quarantine_days: float = 30.0
    """Quarantine records older than this many days are deleted."""
    max_image_mb: int = DEFAULT_IMAGE_MB
    """Largest restored pixel data one instance may declare, in MiB (:class:`DecodeLimits`)."""
    max_model_megapixels: int = DEFAULT_MODEL_MEGAPIXELS
    """Most pixels the model may decode for one instance, in millions: the decode-work ceiling."""
    spool: Path | None = None
    """Folder of the forward queue (``SPOOL/.dicomcrypt-forward``); default ``out``. ``forward`` needs one."""
    forward_retry_first: float = 1.0
    """Seconds before the first retry of a failed forward; doubled per failure in a row."""
    forward_retry_max: float = 300.0
    """Longest wait between forward retries."""
    forward_max_refusals: int = 10
    """Failure statuses the downstream may answer for one instance before it is quarantined."""
    http: tuple[str, int] | None = None
    """(host, port) of the status endpoint (/metrics, /healthz, /studies); ``None``: off."""
    restore_workers: int | None = None
    """Worker processes that restore (:mod:`dicomcrypt.net.restore_pool`); ``None``: one per
    CPU; ``0``: in each association's thread."""
    output_syntax: OutputSyntax = "original"
    """Transfer syntax restored instances are filed and forwarded in (:mod:`dicomcrypt.dicom.output_syntax`)."""
    uid_root: str | None = None
    """UID root of a lossy restore's derived SOP Instance UID; None: the 2.25 form."""

    @property
    def decode_limits(self) -> DecodeLimits:
        """What a received payload may declare before it is refused unread (0xC003)."""
        return DecodeLimits.from_options(max_image_mb=self.max_image_mb, max_model_megapixels=self.max_model_megapixels)

    def checked(self) -> ReceiverConfig:
        """Raise :class:`ReceiverConfigError` naming the first contradiction; return self."""
        validate_ae_title(self.ae_title, what="receiver AE title")
        for title in self.allowed_aets:
            validate_ae_title(title, what="allowed calling AE title")
        if self.store not in ("restored", "encrypted"):
            raise ReceiverConfigError(f"store must be 'restored' or 'encrypted', not {self.store!r}")
        if self.duplicates not in DUPLICATE_POLICIES:
            raise ReceiverConfigError(
                f"duplicates policy {self.duplicates!r} is unknown (choose {', '.join(DUPLICATE_POLICIES)})"
            )
        if self.store == "restored" and (self.keys is None or not self.keys.key_ids):
            raise ReceiverConfigError("restoring needs at least one key (--key), or --store encrypted")
        if self.out is None and self.forward is None:
            raise ReceiverConfigError("nothing to do with received instances: give --out, --forward or both")
        if self.forward is not None and self.spool_dir is None:
            raise ReceiverConfigError("--forward keeps a queue on disk: give --out or --spool for it")
        if self.spool is not None and self.forward is None:
            raise ReceiverConfigError("--spool holds the forward queue: it needs --forward")
        if self.store == "encrypted" and self.forward is not None:
            raise ReceiverConfigError("--forward sends restored instances: it needs --store restored")
        if self.store == "encrypted" and self.out is None:
            raise ReceiverConfigError("--store encrypted needs --out")
        if not 0 <= self.port < 65536:
            raise ReceiverConfigError(f"port {self.port} is not between 0 and 65535")
        if self.max_associations < 1:
            raise ReceiverConfigError("max associations must be 1 or more")
        self._check_limits()
        self._check_restore_output()
        return self

    def _check_restore_output(self) -> None:
        try:
            check_output_syntax(self.output_syntax)
            if self.uid_root is not None:
                check_uid_root(self.uid_root)
        except InvalidInputError as exc:
            raise ReceiverConfigError(str(exc)) from None

    def _check_limits(self) -> None:
        if self.max_associations_per_peer < 1:
            raise ReceiverConfigError("max associations per peer must be 1 or more")
        for name in ("tls_handshake_timeout", "pdu_timeout", "idle_timeout", "association_timeout",
                     "quarantine_days"):
            if not getattr(self, name) > 0:
                raise ReceiverConfigError(f"{name.replace('_', ' ')} must be more than 0 seconds or days")
        if self.max_instance_mb < 1 or self.quarantine_max_mb < 1:
            raise ReceiverConfigError("max instance and quarantine sizes must be 1 MiB or more")
        if self.max_image_mb < 1 or self.max_model_megapixels < 1:
            raise ReceiverConfigError("the decode limits (max image MB, max model megapixels) must be 1 or more")
        if not 0 < self.forward_retry_first <= self.forward_retry_max:
            raise ReceiverConfigError("forward retry times must be more than 0, the first at most the longest")
        if self.forward_max_refusals < 1:
            raise ReceiverConfigError("forward max refusals must be 1 or more")
        if self.restore_workers is not None and self.restore_workers < 0:
            raise ReceiverConfigError("restore workers must be 0 (in the association's thread) or more")

    @property
    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            tls_handshake_timeout=self.tls_handshake_timeout,
            pdu_timeout=self.pdu_timeout,
            association_timeout=self.association_timeout,
            max_per_peer=self.max_associations_per_peer,
            max_pdu_bytes=_MAX_PDU_BYTES,
        )

    @property
    def spool_dir(self) -> Path | None:
        """Where the forward queue lives: ``spool``, else ``out``."""
        return self.spool if self.spool is not None else self.out

    @property
    def quarantine_dir(self) -> Path:
        if self.quarantine is not None:
            return self.quarantine
        root = self.out if self.out is not None else self.spool
        return root / "quarantine" if root is not None else Path("quarantine").resolve()


@dataclass
class _Activity:
    """Which associations are in the middle of an instance (data received, response not yet sent)."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    busy: dict[Any, bool] = field(default_factory=dict)
    received: dict[Any, int] = field(default_factory=dict)
    """P-DATA bytes received per association since its last response: the instance's size so far."""
    closing: bool = False


class Receiver:
    """A running (or ready to run) receiving node; see the module docstring."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config.checked()
        self._ledger = StudyLedger()
        quarantine = make_quarantine(config)
        self._queue: ForwardQueue | None = None
        self._drain: QueueDrain | None = None
        if config.forward is not None and config.spool_dir is not None:
            self._queue = ForwardQueue(config.spool_dir)  # raises ForwardQueueError: refused at start
        self.metrics = ReceiverMetrics(self._queue.stats if self._queue is not None else None)
        if config.forward is not None and self._queue is not None:
            forwarder = Forwarder(config.forward, calling_ae_title=config.ae_title,
                                  ssl_context=config.forward_ssl_context, timeout=config.forward_timeout)
            self._drain = QueueDrain(
                self._queue, forwarder, quarantine=quarantine, listener=self._on_forward_event,
                retry=RetryPolicy(config.forward_retry_first, config.forward_retry_max, config.forward_max_refusals),
            )
        self._handler = StoreHandler(config, quarantine, self._queue)
        self._activity = _Activity()
        self._server: Any = None
        self._http: StatusServer | None = None
        self._pool: RestorePool | None = None

    @property
    def port(self) -> int:
        """The port the receiver listens on (the OS's choice when configured with 0)."""
        if self._server is None:
            raise RuntimeError("receiver is not started")
        return int(self._server.server_address[1])

    @property
    def quarantine_dir(self) -> Path:
        return self.config.quarantine_dir

    @property
    def http_port(self) -> int:
        """The status endpoint's port (the OS's choice when configured with 0)."""
        if self._http is None:
            raise RuntimeError("the status endpoint is not running (no http address, or not started)")
        return self._http.port

    def start(self) -> Receiver:
        """Listen and serve in background threads; returns at once."""
        if self._server is not None:
            raise RuntimeError("receiver is already started")
        ae = self._make_ae()
        self._pool = _restore_pool(self.config)
        self._server = ae.make_server(
            (self.config.host, self.config.port),
            evt_handlers=[
                (evt.EVT_C_STORE, self._on_c_store),
                (evt.EVT_DATA_RECV, self._on_data_received),
                (evt.EVT_DIMSE_SENT, self._on_response_sent),
                (evt.EVT_ACCEPTED, self._on_association, ["accepted"]),
                (evt.EVT_REJECTED, self._on_association, ["rejected"]),
                (evt.EVT_ABORTED, self._on_association, ["aborted"]),
                (evt.EVT_RELEASED, self._on_association, ["released"]),
                (evt.EVT_CONN_CLOSE, self._on_connection_closed),
            ],
            ssl_context=self.config.ssl_context,
            server_class=GuardedServer,
            limits=self.config.connection_limits,
        )
        try:  # before serving: a taken HTTP port stops the start before any association is accepted
            self._start_http()
        except ReceiverConfigError:
            self._server.server_close()
            self._server = None
            raise
        # as AE.start_server(block=False) does, so server.shutdown() finds it in the AE's list
        ae._servers.append(self._server)
        threading.Thread(target=self._server.serve_forever, name="AcceptorServer", daemon=True).start()
        self._handler.quarantine.prune()
        if self._drain is not None:
            self._drain.start()  # what a previous run queued is delivered first
        LOG.info(
            "listening ae=%s host=%s port=%d store=%s tls=%s forward=%s out=%s quarantine=%s",
            self.config.ae_title, self.config.host, self.port, self.config.store,
            "mutual" if _is_mutual(self.config.ssl_context) else ("on" if self.config.ssl_context else "off"),
            self.config.forward or "-", self.config.out or "-", self.quarantine_dir,
        )
        if self._http is not None and self.config.http is not None:
            LOG.info("status endpoint http://%s:%d/ (metrics, healthz, studies)", self.config.http[0], self._http.port)
        return self

    def _start_http(self) -> None:
        if self.config.http is None:
            return
        try:
            self._http = StatusServer(self.config.http, registry=self.metrics.registry, health=self.health,
                                      studies=self.studies_document).start()
        except OSError as exc:
            host, port = self.config.http
            raise ReceiverConfigError(f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}") from None

    def _stop_http(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None

    def studies(self) -> dict[str, StudyCounts]:
        """Per-study counts since start: study UID -> received/stored/refused, series, instances."""
        return self._ledger.snapshot()

    def health(self) -> dict[str, Any]:
        """``/healthz``: whether keys, models, output folder and downstream are usable, and the queue."""
        document = check_health(self.config, self._drain)
        document["queue"] = self._queue_document()
        return document

    def studies_document(self) -> dict[str, Any]:
        """``/studies``: per-study counts as JSON, with what each study still has queued."""
        queued = self._queue.stats().by_study if self._queue is not None else {}
        counts = self.studies()
        studies = {
            uid or "-": {**dataclasses.asdict(counts.get(uid, StudyCounts())), "queued": queued.get(uid, 0)}
            for uid in sorted(set(counts) | set(queued))
        }
        return {"studies": studies, "queue": self._queue_document()}

    def _queue_document(self) -> dict[str, Any] | None:
        if self._queue is None:
            return None
        stats = self._queue.stats()
        return {"depth": stats.depth, "bytes": stats.bytes, "oldest_age_seconds": round(stats.oldest_age_s, 3)}

    def stop(self) -> None:
        """Stop accepting associations, let instances in flight finish and be answered (up to
        ``stop_timeout``), then close the remaining associations and the downstream link."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # no new associations; open ones keep running
        activity = self._activity
        deadline = time.monotonic() + self.config.stop_timeout
        with activity.cond:
            while any(activity.busy.values()) and (left := deadline - time.monotonic()) > 0:
                activity.cond.wait(left)
            activity.closing = True
        time.sleep(_RESPONSE_FLUSH_S)
        associations = server.active_associations
        for assoc in associations:
            assoc.abort()
        for assoc in associations:
            assoc.join(timeout=5)
        if self._drain is not None:  # finishes the instance on the wire; the rest waits for the next start
            self._drain.stop(timeout=self.config.forward_timeout + 5)
        self._stop_http()
        if self._pool is not None:
            self._pool.close()
        for study_uid, counts in sorted(self.studies().items()):
            LOG.info(_fields(event="study", study=study_uid or "-", received=counts.received, stored=counts.stored,
                             refused=counts.refused, series=counts.series, instances=counts.instances,
                             forwarded=counts.forwarded if self.config.forward is not None else None))
        LOG.info("stopped ae=%s", self.config.ae_title)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = _RECEIVE_PDU_BYTES
        ae.maximum_associations = self.config.max_associations
        ae.network_timeout = ae.dimse_timeout = self.config.idle_timeout  # silence between PDUs
        # the wait for the association request (and release) is the time for one PDU: a
        # connection that sends nothing gives its slot back as soon as one that trickles
        ae.acse_timeout = self.config.pdu_timeout
        ae.require_calling_aet = sorted(self.config.allowed_aets)
        ae.require_called_aet = self.config.require_called_aet
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax is not None:  # always set in pynetdicom's list; typed optional
                ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        for sop_class in RETIRED_IMAGE_STORAGE:  # old archives hold them; pynetdicom lists none
            _register_storage_class(sop_class)
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        return ae

    # -- events (each runs in the association's own thread) --------------------------------------

    def _on_c_store(self, event: evt.Event) -> Dataset:
        with self._activity.cond:
            closing = self._activity.closing
        requestor = event.assoc.requestor
        context = {"calling_ae": requestor.ae_title, "peer": requestor.address}
        if closing:
            request = cast(C_STORE, event.request)  # this handler is bound to EVT_C_STORE only
            result = InstanceResult(st.SHUTTING_DOWN, "refused", "receiver is shutting down",
                                    sop_instance_uid=str(request.AffectedSOPInstanceUID))
        else:
            result = self._restore(event, context)
        self._ledger.record(result.study_uid, result.series_uid, result.sop_instance_uid,
                            success=result.status.is_success)
        self.metrics.record_instance(result, self._instance_bytes(event.assoc))
        if result.forwarded and self._drain is not None:
            self._drain.wake()
        _log_instance(context, result)
        response = Dataset()
        response.Status = result.status.code
        if result.comment and not result.status.is_success:
            response.ErrorComment = comment(result.comment)
        return response

    def _restore(self, event: evt.Event, context: dict[str, Any]) -> InstanceResult:
        """The instance decided, filed and/or forwarded: in the pool when there is one, with the
        file pynetdicom wrote as it arrived; else here, in the association's thread."""
        path = getattr(event.request, "_dataset_path", None)  # set when received in chunks
        if self._pool is not None and isinstance(path, Path):
            return self._pool.handle(path, context)
        if isinstance(path, Path):
            return handle_received(self._handler, path, context)
        return self._handler.handle(
            event.encoded_dataset(include_meta=True), lambda: _dataset_with_meta(event), context
        )

    def _on_data_received(self, event: evt.Event) -> None:
        """Runs in the association's socket thread after each PDU: marks it busy, and aborts it
        once the instance in progress passes ``max_instance_mb`` (pynetdicom would buffer it all
        before any handler could answer a status; aborting frees it and stops the stream)."""
        if event.data[:1] != bytes([_P_DATA_TF]):
            return
        limit = self.config.max_instance_mb * _MIB
        with self._activity.cond:
            self._activity.busy[event.assoc] = True
            before = self._activity.received.get(event.assoc, 0)
            size = self._activity.received[event.assoc] = before + len(event.data)
        if size > limit >= before:  # crossed now: log once and abort
            requestor = event.assoc.requestor
            LOG.warning(_fields(event="store", outcome="refused", reason="instance too large",
                                calling_ae=requestor.ae_title, peer=f"{requestor.address}:{requestor.port}",
                                bytes=size, limit=f"{self.config.max_instance_mb}MiB", action="abort"))
            event.assoc.abort(block=False)

    def _instance_bytes(self, assoc: Any) -> int:
        with self._activity.cond:
            return self._activity.received.get(assoc, 0)

    def _on_forward_event(self, event: str, item: Any) -> None:
        self.metrics.record_forward(event, item)
        if event == "forwarded" and item is not None:
            self._ledger.record_forwarded(item.study_uid)

    def _on_response_sent(self, event: evt.Event) -> None:
        with self._activity.cond:
            self._activity.busy[event.assoc] = False
            self._activity.received.pop(event.assoc, None)
            self._activity.cond.notify_all()

    def _on_connection_closed(self, event: evt.Event) -> None:
        self.metrics.connection_closed(event.assoc)
        discard_partial_data_set(event.assoc)
        with self._activity.cond:
            self._activity.busy.pop(event.assoc, None)
            self._activity.received.pop(event.assoc, None)
            self._activity.cond.notify_all()

    def _on_association(self, event: evt.Event, what: str) -> None:
        requestor = event.assoc.requestor
        rejection = _rejection(event.assoc, self.config) if what == "rejected" else None
        self.metrics.record_association(what, event.assoc, rejection[0] if rejection else "")
        LOG.log(logging.WARNING if rejection else logging.INFO,
                _fields(event="association", outcome=what, calling_ae=requestor.ae_title,
                        peer=f"{requestor.address}:{requestor.port}", reason=rejection[1] if rejection else None))


def _rejection(assoc: Any, config: ReceiverConfig) -> tuple[str, str]:
    """Why pynetdicom sent A-ASSOCIATE-RJ: a short metric label and the reason in the words of our
    options, read from the (result, source, diagnostic) its ACSE negotiation actually sent."""
    sent = assoc.acceptor.primitive
    called = getattr(assoc.requestor.primitive, "called_ae_title", "")
    diagnostic = tuple(getattr(sent, name, None) for name in ("result", "result_source", "diagnostic"))
    if diagnostic == (0x01, 0x01, 0x03):
        return "calling AE not recognised", "calling AE title not in --allow-aet"
    if diagnostic == (0x01, 0x01, 0x07):
        return ("called AE not recognised",
                f"called AE title {called!r} is not ours ({config.ae_title!r}; --no-require-called-aet accepts any)")
    if diagnostic == (0x02, 0x03, 0x02):
        return "too many associations", f"too many associations (--max-associations {config.max_associations})"
    try:
        return "other", str(sent.reason_str)
    except Exception:  # an unusual primitive: say what we can
        return "other", "association rejected"


def make_quarantine(config: ReceiverConfig) -> Quarantine:
    """The quarantine folder ``config`` asks for (each restore worker builds its own)."""
    return Quarantine(config.quarantine_dir, max_bytes=config.quarantine_max_mb * _MIB,
                      max_age_s=config.quarantine_days * 86400)


def _restore_pool(config: ReceiverConfig) -> RestorePool | None:
    """The started pool that restores for ``config``, or None to restore in association threads.

    With a pool, pynetdicom writes each received data set to a file as it arrives
    (``STORE_RECV_CHUNKED_DATASET``, process-wide; handlers here read either form), so no
    instance is held in memory whole and the worker reads it from there.
    """
    workers = config.restore_workers if config.restore_workers is not None else usable_cpus()
    if workers < 1:
        return None
    from pynetdicom import _config

    _config.STORE_RECV_CHUNKED_DATASET = True
    return RestorePool(config, workers).start()


def _register_storage_class(sop_class: UID) -> None:
    """Tell pynetdicom that C-STOREs of ``sop_class`` are the Storage service (it routes a SOP
    class it does not know to no service at all). Idempotent."""
    if uid_to_service_class(sop_class) is not StorageServiceClass:
        register_uid(sop_class, sop_class.keyword, StorageServiceClass)


def _dataset_with_meta(event: evt.Event) -> Dataset:
    ds = event.dataset
    ds.file_meta = event.file_meta
    return ds


def _is_mutual(ctx: ssl.SSLContext | None) -> bool:
    return ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED


def _log_instance(context: dict[str, Any], result: InstanceResult) -> None:
    """One line per instance: who sent it, which study/instance, what happened. Never patient
    data or key material (key ids are public, and the decryption comment is constant)."""
    level = logging.INFO if result.status.is_success else logging.WARNING
    LOG.log(level, _fields(
        event="store", calling_ae=context["calling_ae"], peer=context["peer"],
        study=result.study_uid or "-", series=result.series_uid or "-", sop=result.sop_instance_uid or "-",
        outcome=result.outcome, status=f"0x{result.status.code:04X}", mode=result.mode or "-",
        forwarded="yes" if result.forwarded else "no", seconds=f"{result.seconds:.3f}",
        comment=result.comment or None,
        quarantined=str(result.quarantined) if result.quarantined else None,
    ))


def _fields(**fields: Any) -> str:
    """``key=value`` pairs, values quoted when they hold spaces; ``None`` values left out. Values
    come from peers (AE titles, UIDs, comments): control characters are escaped, so a newline
    in a UID cannot start a line of its own."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        text = escape(value)
        if not text or any(ch in text for ch in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)
