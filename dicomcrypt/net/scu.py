"""The sending node: ``send`` (C-STORE of whole studies, encrypted on the fly) and ``echo``.

How a send runs::

    paths ──outbox.plan──> Outgoing items (treatment decided, plaintext refused)
                             │
           encrypt items ──Sealer (worker processes)──> Future[Sealed]
                             │
           bounded queue of (item, future)  ──>  N sender threads, one association each
                                                    │ C-STORE, status recorded per instance
                                                    └─> SendReport (per study, failures)

The wire never waits for the codec and nothing is parsed twice (issue 14): the workers encrypt
ahead of the network (the queue holds a few instances per association plus one per worker) and
each writes its sealed instance as a file into the send's spool; a sender thread writes the
data set from that file to the socket in PDUs as large as the peer accepts, unparsed, whenever
the peer accepted the file's own transfer syntax (files sent as they are travel the same way;
:mod:`dicomcrypt.net.store_stream` on plain TCP, pynetdicom's file streaming on TLS). Only
when it did not is the file decoded and re-encoded.
Sockets have TCP_NODELAY: a C-STORE is a few PDUs then a wait for the answer, and Nagle's
algorithm against the peer's delayed ACK would add up to 40 ms per instance.

Several associations (``associations``; one by default, :data:`DEFAULT_ASSOCIATIONS` says why)
keep a receiver that restores in a pool of processes busy: DIMSE on one association is
request-then-answer, so the receiver restores at most one instance per association at a time. The first
association is opened before anything is encrypted, so a wrong AE title, address or certificate
fails at once; an extra association the peer refuses or does not answer (a PACS with a per-host
limit, a single-threaded ``storescp``) just leaves its share to the others. A connection lost
mid-send is reopened and the instance re-sent, up to ``retries`` times, and so is one the peer
refused as "Out of Resources" (0xA7xx, a transient refusal by definition); any other failure
status is final and recorded with its code and comment (the failed paths can be re-sent later).
The queue holds only a few instances per association, so memory stays flat whatever the study
size.
"""

from __future__ import annotations

import os
import queue
import socket
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.dataset import Dataset

from dicomcrypt.errors import AssociationError, NoAcceptedContextError
from dicomcrypt.net.address import Peer
from dicomcrypt.net.contexts import NATIVE, VERIFICATION, ContextRequest, fit_to_accepted, plan_groups
from dicomcrypt.net.outbox import Outgoing, Sealed, Sealer, Unsendable, plan
from dicomcrypt.net.send_report import InstanceResult, SendReport
from dicomcrypt.net.store_stream import can_stream, store_file
from dicomcrypt.settings import EncryptionSettings

if TYPE_CHECKING:
    from pynetdicom.ae import ApplicationEntity
    from pynetdicom.association import Association

__all__ = ["DEFAULT_ASSOCIATIONS", "DEFAULT_TIMEOUT", "echo", "open_association", "retry_paths", "send"]

DEFAULT_TIMEOUT = 600.0
"""Seconds to wait for a C-STORE answer: the receiving node restores (decodes) before it
answers, which for a large lossless image takes a while on a small CPU."""
CONNECT_TIMEOUT = 30.0
"""Seconds for TCP connect and association negotiation (ACSE)."""
_RETRY_PAUSE = 1.0
_OUT_OF_RESOURCES = range(0xA700, 0xA800)
MAX_PDU_BYTES = 1024 * 1024
"""The largest PDU we announce we can receive (answers are small; this is symmetry with
``serve``, which announces the same so senders cut data sets into few, large PDUs)."""
DEFAULT_ASSOCIATIONS = 1
"""One association unless asked. The receiver's parallelism comes from concurrent associations
(DIMSE is request-then-answer), but its slots are shared by every sender (``serve``: 4 per host,
10 in all) and a sender whose first association is refused sends nothing: by default a sender
takes one slot, so several senders on one host (modalities behind a router, a gateway's
processes) all get in. A sender that has the receiver to itself asks for more
(``--associations N``, up to the receiver's per-host limit); extra associations the receiver
refuses leave their share to the others.

Measured (issue 14, ``benchmarks/bench_network.py``, loaded 2-core machine): two associations
made the vault row faster in most runs (one instance on the wire while the receiver files the
other; ``docs/benchmarks.md``), the standard row faster in one run and slower in another, the
codec-bound lossless row no faster; and with two by default, four
senders behind one address fill ``serve``'s per-host limit (4) with two of them and the others'
first association is refused (``tests/net/test_load.py``), so one stays the default."""


def _no_delay(event: Any) -> None:
    """EVT_CONN_OPEN: disable Nagle's algorithm on the association's socket."""
    set_no_delay(event.assoc.dul.socket.socket)


def set_no_delay(sock: socket.socket | None) -> None:
    """TCP_NODELAY on ``sock`` (a TLS socket too); a socket that is not TCP is left alone."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


# --------------------------------------------------------------------------- associations


def _application_entity(calling_aet: str, timeout: float) -> ApplicationEntity:
    from pynetdicom import AE

    ae = AE(ae_title=calling_aet)
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.acse_timeout = CONNECT_TIMEOUT
    ae.connection_timeout = CONNECT_TIMEOUT
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    return ae


def open_association(
    ae: ApplicationEntity,
    peer: Peer,
    contexts: Sequence[ContextRequest],
    ssl_context: ssl.SSLContext | None = None,
) -> Association:
    """An established association with ``peer`` proposing ``contexts``; else AssociationError
    saying why (unreachable, rejected with the peer's reason, aborted, TLS failure)."""
    from pynetdicom import evt
    from pynetdicom.presentation import build_context

    requested = [build_context(c.abstract_syntax, list(c.transfer_syntaxes)) for c in contexts]
    tls_args = (ssl_context, peer.host) if ssl_context is not None else None
    try:
        assoc = ae.associate(peer.host, peer.port, contexts=requested, ae_title=peer.ae_title, tls_args=tls_args,
                             max_pdu=MAX_PDU_BYTES, evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])
    except OSError as exc:  # pynetdicom resolves the host name itself: socket.gaierror for an unknown host
        raise AssociationError(f"association with {peer}: cannot connect to {peer.host}:{peer.port}: "
                               f"{exc.strerror or exc}") from None
    if assoc.is_established:
        return assoc
    raise AssociationError(f"association with {peer}: {_why_not_established(assoc, peer, ssl_context)}")


def _why_not_established(assoc: Association, peer: Peer, ssl_context: ssl.SSLContext | None) -> str:
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        if primitive is None:
            return "rejected by the peer"
        try:
            return (
                f"rejected by the peer ({primitive.result_str.lower()}, {primitive.source_str}): "
                f"{primitive.reason_str}"
            )
        except Exception:  # an unusual reject PDU
            return "rejected by the peer"
    try:
        with socket.create_connection((peer.host, peer.port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        return f"cannot connect to {peer.host}:{peer.port}: {exc.strerror or exc}"
    if ssl_context is not None:
        return ("aborted during negotiation; the TLS handshake failed "
                "(is the peer using TLS, and are the certificates trusted?)")
    if assoc.is_aborted:
        # A peer that rejects and closes at once can be seen either way: pynetdicom may notice
        # the closed socket before it reads the A-ASSOCIATE-RJ. So name both causes.
        return ("not accepted: the peer ended the negotiation (it may have rejected this calling AE "
                "or these presentation contexts, or it may expect TLS)")
    return "no answer to the association request (timeout)"


def _abort_leftovers(ae: ApplicationEntity) -> None:
    """Abort associations still alive on the way out, e.g. one whose negotiation Ctrl-C cut
    short: pynetdicom's DUL thread is not a daemon and would keep the process alive."""
    for assoc in list(ae.active_associations):
        assoc.abort()


class _Channel:
    """One association to the peer, reopened when it is lost; message IDs count per channel."""

    def __init__(
        self, ae: ApplicationEntity, peer: Peer, contexts: Sequence[ContextRequest], ssl_context: ssl.SSLContext | None
    ) -> None:
        self.ae, self.peer, self.contexts, self.ssl_context = ae, peer, contexts, ssl_context
        self.assoc: Association | None = None
        self._message_id = 0

    def ensure(self) -> Association:
        if self.assoc is None or not self.assoc.is_established:
            self.assoc = None
            self.assoc = open_association(self.ae, self.peer, self.contexts, self.ssl_context)
        return self.assoc

    def next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def drop(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.abort()
        self.assoc = None

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()
        self.assoc = None


# --------------------------------------------------------------------------- echo


def echo(
    peer: Peer, *, calling_aet: str, ssl_context: ssl.SSLContext | None = None, timeout: float = CONNECT_TIMEOUT
) -> int:
    """C-ECHO ``peer``; returns the status it answered (0x0000 is success).

    Raises :class:`AssociationError` when no association could be made or no answer came.
    """
    ae = _application_entity(calling_aet, timeout)
    try:
        assoc = open_association(ae, peer, [ContextRequest(VERIFICATION, NATIVE)], ssl_context)
    except BaseException:
        _abort_leftovers(ae)
        raise
    try:
        status = assoc.send_c_echo()
        if assoc.is_established:
            assoc.release()
    finally:
        _abort_leftovers(ae)
    if not status or "Status" not in status:
        raise AssociationError(f"association with {peer}: no answer to C-ECHO (aborted or timed out)")
    return int(status.Status)


# --------------------------------------------------------------------------- send


Progress = Callable[[InstanceResult], None]


def send(
    paths: Iterable[str | os.PathLike[str]],
    peer: Peer,
    *,
    calling_aet: str,
    settings: EncryptionSettings | None = None,
    allow_plain: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    associations: int = DEFAULT_ASSOCIATIONS,
    retries: int = 2,
    workers: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
    on_start: Callable[[int], None] | None = None,
) -> SendReport:
    """Send every DICOM file under ``paths`` to ``peer``; returns the per-instance report.

    Plain images are encrypted as ``settings`` say (targets, mode, model, latent format,
    identity protection), in ``workers`` processes; files that are already encrypted, and
    non-images, are sent as they are. ``associations``: how many in parallel
    (see :data:`DEFAULT_ASSOCIATIONS`). With no settings (nobody to encrypt for), plain images
    raise :class:`~dicomcrypt.errors.PlaintextRefusedError` unless ``allow_plain``.

    Raises :class:`AssociationError` when the first association cannot be made (nothing was
    sent). Every later problem is recorded per instance. Ctrl-C stops sending after the
    instances in flight; the report then has ``interrupted`` set and lists the rest as failed.
    ``on_start(n)`` is called once the inputs are read, with the number of instances (for a
    progress bar); ``progress(result)`` after each instance.
    """
    started = time.perf_counter()
    items, unsendable = plan(paths, settings, allow_plain=allow_plain)
    report = SendReport(str(peer))
    recorder = _Recorder(report, progress)
    if on_start is not None:
        on_start(len(items) + len(unsendable))
    for bad in unsendable:
        recorder(_unsendable_result(bad))
    if not items:
        report.seconds = time.perf_counter() - started
        return report

    _stream_files()
    ae = _application_entity(calling_aet, timeout)
    sealer = Sealer(settings, workers) if settings is not None else None
    stop = threading.Event()
    try:
        for index, (contexts, group) in enumerate(_groups(items)):
            if stop.is_set():
                break
            _send_group(ae, peer, contexts, group, ssl_context=ssl_context, associations=associations,
                        retries=retries, sealer=sealer, stop=stop, record=recorder, first=index == 0)
    except KeyboardInterrupt:
        stop.set()
    finally:
        if sealer is not None:
            sealer.close(cancel=stop.is_set())
        _abort_leftovers(ae)
    done = {r.path for r in report.results}
    never_tried = [item for item in items if item.path not in done]
    # Ctrl-C, wherever it landed (_join catches it too); it matters only if something was left
    report.interrupted = stop.is_set() and (bool(never_tried) or any(
        r.error == "not sent: interrupted" for r in report.results))
    for item in never_tried:
        recorder(_result(item, error="not sent: interrupted"))
    report.seconds = time.perf_counter() - started
    return report


def _stream_files() -> None:
    """pynetdicom sends a data set given as a file path straight from the file, in PDU-sized
    chunks, when the context accepted is the file's own transfer syntax (else ``send_c_store``
    raises ValueError and :func:`_store` decodes it). Process-wide; the forwarder and every
    other caller give pynetdicom data sets, which this does not affect."""
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = True


def _groups(items: list[Outgoing]) -> list[tuple[list[ContextRequest], list[Outgoing]]]:
    """Items split by the association (context group) that will carry them."""
    needs: dict[str, set[str]] = defaultdict(set)
    for item in items:
        needs[item.sop_class_uid].add(item.transfer_syntax)
    groups = []
    for contexts in plan_groups(needs):
        classes = {c.abstract_syntax for c in contexts}
        groups.append((contexts, [item for item in items if item.sop_class_uid in classes]))
    return groups


class _Recorder:
    """Collects results from several sender threads and reports each to ``progress``."""

    def __init__(self, report: SendReport, progress: Progress | None) -> None:
        self.report, self.progress = report, progress
        self._lock = threading.Lock()

    def __call__(self, result: InstanceResult) -> None:
        with self._lock:
            self.report.results.append(result)
            if self.progress is not None:
                self.progress(result)


_Job = tuple[Outgoing, "Future[Sealed] | None"]


def _send_group(
    ae: ApplicationEntity,
    peer: Peer,
    contexts: list[ContextRequest],
    items: list[Outgoing],
    *,
    ssl_context: ssl.SSLContext | None,
    associations: int,
    retries: int,
    sealer: Sealer | None,
    stop: threading.Event,
    record: _Recorder,
    first: bool,
) -> None:
    """Send ``items`` over up to ``associations`` parallel associations proposing ``contexts``."""
    channels = [_Channel(ae, peer, contexts, ssl_context) for _ in range(max(1, min(associations, len(items))))]
    try:
        channels[0].ensure()
    except AssociationError as exc:
        if first:
            raise
        for item in items:
            record(_result(item, error=f"not sent: {exc}"))
        return
    workers = sealer.workers if sealer is not None else 0
    jobs: queue.Queue[_Job] = queue.Queue(maxsize=2 * len(channels) + workers)
    queued_all = threading.Event()
    threads = [
        threading.Thread(target=_sender_loop, args=(channel, jobs, queued_all),
                         kwargs={"retries": retries, "stop": stop, "record": record, "extra": i > 0},
                         name=f"dicomcrypt-send-{i}", daemon=True)
        for i, channel in enumerate(channels)
    ]
    for thread in threads:
        thread.start()
    try:
        for item in items:
            if stop.is_set():
                break
            future = sealer.submit(item.path) if sealer is not None and item.treatment == "encrypt" else None
            jobs.put((item, future))
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        if stop.is_set():
            _drain(jobs)
        queued_all.set()
        for thread in threads:
            _join(thread, stop)


def _drain(jobs: queue.Queue[_Job]) -> None:
    """Interrupted: cancel queued encryptions; queued items are reported as not sent."""
    while True:
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            return
        if job[1] is not None:
            job[1].cancel()


def _join(thread: threading.Thread, stop: threading.Event) -> None:
    """Wait for a sender to finish its instance in flight; a second Ctrl-C is ignored here."""
    while thread.is_alive():
        try:
            thread.join(0.2)
        except KeyboardInterrupt:
            stop.set()


def _next_job(jobs: queue.Queue[_Job], queued_all: threading.Event) -> _Job | None:
    """The next job, or None once every job was queued and taken (no sentinels: a sender whose
    association never opened leaves without taking any, and the others finish the queue)."""
    while True:
        try:
            return jobs.get(timeout=0.1)
        except queue.Empty:
            if queued_all.is_set() and jobs.empty():
                return None


def _sender_loop(
    channel: _Channel, jobs: queue.Queue[_Job], queued_all: threading.Event, *, retries: int,
    stop: threading.Event, record: _Recorder, extra: bool = False,
) -> None:
    if extra:  # the first association is open already; an extra one the peer refuses is not needed
        try:
            channel.ensure()
        except AssociationError:
            return
    try:
        while (job := _next_job(jobs, queued_all)) is not None:
            item, future = job
            if stop.is_set():
                if future is not None:
                    future.cancel()
                continue  # recorded as "not sent: interrupted" by send()
            try:
                record(_deliver(channel, item, future, retries, stop))
            except Exception as exc:  # a bug must not silently lose the instance
                record(_result(item, error=f"internal error: {type(exc).__name__}: {exc}"))
    finally:
        channel.close()


def _deliver(channel: _Channel, item: Outgoing, future: Future[Sealed] | None, retries: int,
             stop: threading.Event) -> InstanceResult:
    """Prepare ``item`` (wait for its encryption, or read it) and C-STORE it, retrying on a
    lost connection. Returns its record; never raises for a per-instance problem."""
    prepared = _prepare(item, future)
    if isinstance(prepared, InstanceResult):
        return prepared
    try:
        return _store(channel, item, prepared, retries=retries, stop=stop)
    finally:
        if prepared.spooled:
            Path(prepared.path).unlink(missing_ok=True)


@dataclass
class _Prepared:
    """An instance ready to send: its Part 10 file and the report fields known before sending."""

    path: str
    streamable: bool
    fields: dict[str, Any]
    spooled: bool = False
    """A sealed file in the send's spool, removed once sent."""
    _dataset: Dataset | None = field(default=None, repr=False)

    def dataset(self) -> Dataset:
        """The file decoded, for a peer that did not accept its transfer syntax (read once)."""
        if self._dataset is None:
            self._dataset = pydicom.dcmread(self.path)
        return self._dataset


def _prepare(item: Outgoing, future: Future[Sealed] | None) -> _Prepared | InstanceResult:
    """The file to send and its report fields, or the failure record of an instance that cannot
    be sent (its encryption failed or was cancelled, it cannot be read)."""
    if future is not None:
        try:
            sealed = future.result()
        except CancelledError:
            return _result(item, error="not sent: interrupted")
        except Exception as exc:  # the worker process died (out of memory, crash)
            return _result(item, error=f"not sent: encryption worker failed: {type(exc).__name__}: {exc}")
        if sealed.error is not None:
            return _result(item, error=f"not sent: encryption failed: {sealed.error}", seal_seconds=sealed.seconds)
        return _Prepared(sealed.path, True, {"bytes_sent": sealed.size, "seal_seconds": sealed.seconds,
                                             "mode": sealed.mode, "note": sealed.note,
                                             "envelope_bytes": sealed.envelope_bytes}, spooled=True)
    try:
        return _Prepared(item.path, item.streamable, {"bytes_sent": os.path.getsize(item.path)})
    except OSError as exc:
        return _result(item, error=f"not sent: cannot read: {type(exc).__name__}: {exc}")


def _store(
    channel: _Channel, item: Outgoing, prepared: _Prepared, *, retries: int, stop: threading.Event,
) -> InstanceResult:
    """C-STORE ``prepared``, reopening a lost association and re-sending up to ``retries`` times."""
    last_error = "not sent"
    fields = prepared.fields
    for attempt in range(retries + 1):
        if stop.is_set():
            return _result(item, error="not sent: interrupted", **fields)
        if attempt:
            time.sleep(_RETRY_PAUSE)
        try:
            assoc = channel.ensure()
        except AssociationError as exc:
            last_error = f"not sent: {exc}"
            continue
        to_send: Dataset | Path
        context_id = _accepted_as_is(assoc, item) if prepared.streamable else None
        if context_id is not None:
            to_send = Path(prepared.path)  # streamed from the file, never parsed here
        else:
            try:
                to_send = fit_to_accepted(assoc.accepted_contexts, prepared.dataset(), item.sop_class_uid)
            except NoAcceptedContextError as exc:
                return _result(item, error=f"not sent: {exc}", **fields)
            except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged files
                return _result(item, error=f"not sent: cannot read: {type(exc).__name__}: {exc}", **fields)
        started = time.perf_counter()
        try:
            status = _c_store(assoc, item, to_send, context_id, channel.next_message_id())
        except ValueError as exc:  # no accepted context, or the dataset cannot be encoded
            return _result(item, error=f"not sent: {exc}", **fields)
        except OSError as exc:  # the file went away between planning and sending
            return _result(item, error=f"not sent: cannot read: {exc.strerror or exc}", **fields)
        seconds = time.perf_counter() - started
        if not status or "Status" not in status:
            channel.drop()
            last_error = "connection lost or timed out before the peer answered"
            continue
        code, comment = int(status.Status), str(status.get("ErrorComment", "") or "")
        if _OUT_OF_RESOURCES.start <= code < _OUT_OF_RESOURCES.stop and attempt < retries:
            last_error = f"peer answered 0x{code:04X} (refused: out of resources): {comment}"
            continue  # transient by definition (PS3.4 B.2.3): try again after a pause
        return _result(item, status=code, comment=comment, send_seconds=seconds, **fields)
    suffix = f" (after {retries + 1} attempts)" if retries else ""
    return _result(item, error=last_error + suffix, **fields)


def _c_store(assoc: Association, item: Outgoing, to_send: Dataset | Path, context_id: int | None,
             msg_id: int) -> Dataset:
    """One C-STORE; a file the peer takes as it is goes by :func:`store_file` on plain TCP, under
    the UIDs of its File Meta (a sealed file's, which identity protection may have replaced)."""
    if isinstance(to_send, Path) and context_id is not None and can_stream(assoc):
        from pynetdicom.dsutils import split_dataset

        meta, offset = split_dataset(to_send)
        return store_file(assoc, to_send, context_id=context_id, msg_id=msg_id,
                          sop_class_uid=str(meta.get("MediaStorageSOPClassUID", item.sop_class_uid)),
                          sop_instance_uid=str(meta.get("MediaStorageSOPInstanceUID", item.sop_instance_uid)),
                          offset=offset)
    return assoc.send_c_store(to_send, msg_id=msg_id)


def _accepted_as_is(assoc: Association, item: Outgoing) -> int | None:
    """The ID of a context the peer accepted for ``item``'s SOP class in exactly its file's
    transfer syntax, or None."""
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == item.sop_class_uid and cx.transfer_syntax[0] == item.transfer_syntax:
            return cx.context_id
    return None


def _result(item: Outgoing, **fields: Any) -> InstanceResult:
    return InstanceResult(
        path=item.path,
        sop_instance_uid=item.sop_instance_uid,
        sop_class_uid=item.sop_class_uid,
        study_uid=item.study_uid,
        modality=item.modality,
        treatment=item.treatment,
        **fields,
    )


def _unsendable_result(bad: Unsendable) -> InstanceResult:
    return InstanceResult(path=bad.path, error=f"not sent: {bad.error}")


def retry_paths(report: SendReport) -> list[str]:
    """The files to give a new ``send`` to re-send what did not arrive."""
    return sorted({r.path for r in report.failed})

