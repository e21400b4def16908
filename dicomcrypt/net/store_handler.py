"""What the receiving node does with one C-STORE: check it against the request, decide, file, queue to forward.

The decision itself is :func:`dicomcrypt.receive.receive`'s, the same one every PACS hook
makes; this module adds only what needs the network or the node's disk::

    C-STORE ──> data set names the SOP Class/Instance the request announced? (PS3.4 B.2.3)
            ──> receive(): restored / kept encrypted / passed through / refused + status
            ──> file under out/ (atomic, duplicate policy) and/or queue for the downstream
            ──> success only after both are durable (store-and-forward: the queue's drain
                delivers later, :mod:`dicomcrypt.net.forward`)

The request check stays here because only a C-STORE has a request to compare with (a Part 10
file from a PACS hook has the sender's own File Meta, which hooks do not hold against it), and
it runs before :func:`receive` so a mismatched instance is never decrypted.

Any failure maps to one status: :mod:`dicomcrypt.status` for what the library decides,
:mod:`dicomcrypt.net.status` for the node's own (duplicates, stopping). Instances refused for
their content are quarantined: with the bytes as received when they carry a dicomcrypt
envelope (their pixels are the placeholder), as the header without pixel or other bulk data
when they do not (a plain image refused 0xC005: its pixels are never stored in the clear), or
as the note alone when the data set cannot be decoded. Transient failures (disk, queue)
are not quarantined, because the sender still holds the instance and should retry.

With ``--forward`` the instance is put in the persistent forward queue (:mod:`dicomcrypt.net.forward_queue`)
before success is answered, so success means "durably queued", not "acknowledged by the PACS"; a
queue that cannot be written is 0xA700 like a full disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from pydicom.dataset import Dataset

from dicomcrypt import dicom
from dicomcrypt import status as st
from dicomcrypt.errors import DuplicateConflictError, ForwardQueueError, NotDicomError
from dicomcrypt.net.status import DUPLICATE_CONFLICT
from dicomcrypt.net.storage import Quarantine, file_instance, header_only, instance_path
from dicomcrypt.receive import Decision, ReceivePolicy, receive

if TYPE_CHECKING:
    from dicomcrypt.net.forward_queue import ForwardQueue
    from dicomcrypt.net.scp import ReceiverConfig

__all__ = ["InstanceResult", "StoreHandler", "classify"]

@dataclass(frozen=True)
class InstanceResult:
    """What happened to one received instance; the receiver logs it and counts it per study."""

    status: st.StoreStatus
    outcome: str
    """``restored``, ``kept encrypted``, ``passed through``, ``duplicate``, ``replaced`` or ``refused``."""
    comment: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    mode: str | None = None
    path: Path | None = None
    quarantined: Path | None = None
    forwarded: bool = False
    """Put in the forward queue (delivered downstream later, by the queue's drain)."""
    seconds: float = 0.0
    bytes_stored: int = 0
    """Size of what was filed and/or queued (restored instances are larger than what arrived)."""


def classify(exc: BaseException) -> tuple[st.StoreStatus, str]:
    """The status and Error Comment for a failure: the receiver's own first, then the library's."""
    if isinstance(exc, DuplicateConflictError):
        return DUPLICATE_CONFLICT, "SOP Instance UID already filed with other content"
    if isinstance(exc, ForwardQueueError):
        return st.OUT_OF_RESOURCES, st.comment(str(exc))
    return st.status_for_error(exc)


class StoreHandler:
    """Wraps :func:`receive` for each received instance, under one receiver's configuration.

    Thread-safe: pynetdicom calls :meth:`handle` from each association's own thread; the only
    shared state is the file system (atomic, no-clobber writes) and the forward queue (SQLite,
    one connection per process, safe from several threads and processes).
    """

    def __init__(self, config: ReceiverConfig, quarantine: Quarantine, forward_queue: ForwardQueue | None) -> None:
        self.config = config
        self.policy = ReceivePolicy(
            store=config.store, keys=config.keys, accept_plain=config.accept_plain, limits=config.decode_limits,
            output_syntax=config.output_syntax, uid_root=config.uid_root,
        )
        self.quarantine = quarantine
        self.forward_queue = forward_queue

    def handle(self, raw: bytes, decode: Callable[[], Dataset], context: dict[str, Any]) -> InstanceResult:
        """``raw``: the instance as received (Part 10 bytes); ``decode()`` returns its data set
        with file meta; ``context``: calling AE and peer, for logs and quarantine sidecars."""
        started = time.perf_counter()
        uids: dict[str, str] = {}
        ds: Dataset | None = None
        try:
            ds = _announced_instance(decode)
            uids = _uid_fields(ds)
            decision = receive(raw, self.policy, dataset=ds)
            if not decision.refused:
                return self._file(decision, uids, started)
            status, comment = decision.status, decision.comment
        except Exception as exc:  # noqa: BLE001 - every failure is a status; none reaches pynetdicom
            status, comment = classify(exc)
        quarantined = None if status.retry else self._quarantine(raw, ds, status, comment, {**context, **uids})
        return InstanceResult(
            status, "refused", comment, quarantined=quarantined,
            seconds=time.perf_counter() - started, **_result_uids(uids),
        )

    def _file(self, decision: Decision, uids: dict[str, str], started: float) -> InstanceResult:
        """File and/or queue an accepted instance for forwarding; raises what the disk refuses."""
        config = self.config
        assert decision.dataset is not None  # an accepted decision always has its data set
        if decision.action == "restored":
            uids = _uid_fields(decision.dataset)  # a lossy restore is a new instance with a new UID
        outcome: str = decision.action
        path = None
        if config.out is not None:
            path = instance_path(config.out, uids["study_uid"], uids["series_uid"], uids["sop_instance_uid"])
            filed_as = file_instance(
                decision.data, path, policy=config.duplicates, quarantine=self.quarantine,
                context={**uids, "status": f"0x{DUPLICATE_CONFLICT.code:04X}"},
            )
            if filed_as != "stored":
                outcome = filed_as
        if self.forward_queue is not None:  # after the local file: a queued instance is also filed
            self.forward_queue.put(decision.data, study_uid=uids["study_uid"],
                                   sop_instance_uid=uids["sop_instance_uid"])
        return InstanceResult(
            st.SUCCESS, outcome, mode=decision.mode, path=path, forwarded=self.forward_queue is not None,
            seconds=time.perf_counter() - started, bytes_stored=len(decision.data), **_result_uids(uids),
        )

    def _quarantine(
        self, raw: bytes, ds: Dataset | None, status: st.StoreStatus, comment: str, context: dict[str, Any]
    ) -> Path | None:
        """Keep a bounded record of a refused instance: see the module docstring for what is kept."""
        data: bytes | None = None
        kept = "as received"
        try:
            if ds is not None and _carries_envelope(ds):
                data = raw
            elif ds is not None:
                data, kept = header_only(ds), "header without pixel or bulk data"
        except Exception:  # noqa: BLE001 - a header that will not encode: the note alone is kept
            data = None
        try:
            return self.quarantine.keep(
                data, reason=status.name, kept=kept,
                context={**context, "status": f"0x{status.code:04X}", "comment": comment},
            )
        except OSError:
            return None  # the receiver logs the refusal; a full disk must not hide the status


def _carries_envelope(ds: Dataset) -> bool:
    """Whether ``ds`` has a dicomcrypt private block (a damaged one counts: its pixels are ours)."""
    try:
        return dicom.read_private_block(ds) is not None
    except Exception:  # noqa: BLE001 - malformed block content is still an envelope's
        return True


def _announced_instance(decode: Callable[[], Dataset]) -> Dataset:
    """The data set, which must name the SOP class and instance the C-STORE request announced
    (PS3.4 B.2.3): bytes that merely parse, or an instance sent under another's UID, are not filed.
    pynetdicom puts the request's UIDs in the file meta it builds."""
    try:
        ds = decode()
        meta = ds.file_meta
        named = {keyword: ds.get(keyword) for keyword in ("SOPClassUID", "SOPInstanceUID")}
    except Exception as exc:  # noqa: BLE001 - decoding raises many types
        raise NotDicomError(f"data set cannot be decoded ({type(exc).__name__})") from None
    for keyword, announced in (
        ("SOPClassUID", "MediaStorageSOPClassUID"),
        ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
    ):
        value = named[keyword]
        if not value:
            raise NotDicomError(f"data set has no {keyword}: not a DICOM instance")
        if str(value) != str(meta.get(announced, value)):
            raise NotDicomError(f"data set {keyword} differs from the C-STORE request")
    return ds


def _uid_fields(ds: Dataset) -> dict[str, str]:
    sop_class, sop_instance, study, series = dicom.uids(ds)
    return {"sop_class_uid": sop_class, "sop_instance_uid": sop_instance, "study_uid": study, "series_uid": series}


class _ResultUids(TypedDict):
    study_uid: str
    series_uid: str
    sop_instance_uid: str


def _result_uids(uids: dict[str, str]) -> _ResultUids:
    """The UIDs an InstanceResult carries; empty when the data set never decoded."""
    return _ResultUids(
        study_uid=uids.get("study_uid", ""),
        series_uid=uids.get("series_uid", ""),
        sop_instance_uid=uids.get("sop_instance_uid", ""),
    )
