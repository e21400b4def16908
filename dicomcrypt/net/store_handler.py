"""What the receiving node does with one C-STORE: decode, verify, restore, file or forward, answer.

The answer is decided here and nowhere else::

    received bytes ──decode──> data set ──┬─ dicomcrypt envelope ─┬─ store restored: decrypt_instance
                                          │                       └─ store encrypted: check header
                                          │                          (and authenticate, given a key)
                                          └─ no envelope: non-image passes through; a plain image
                                             is refused unless accept_plain
    ──> file under out/ (atomic) and/or forward downstream ──> success only after both

Any failure maps to one status of :mod:`dicomcrypt.net.status`. Instances refused for their
content are quarantined with the bytes as received; transient failures (disk, downstream) are
not, because the sender still holds the instance and should retry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, UID

from dicomcrypt import dicom
from dicomcrypt.dicom.encoding import is_big_endian, set_transfer_syntax
from dicomcrypt.envelope import instance_binding, open_envelope, read_header
from dicomcrypt.errors import (
    DuplicateConflictError,
    ForwardRefusedError,
    ForwardUnreachableError,
    NotDicomError,
    NotEncryptedError,
)
from dicomcrypt.files import dicom_to_bytes
from dicomcrypt.net import status as st
from dicomcrypt.net.storage import Quarantine, file_instance, instance_path

if TYPE_CHECKING:
    from dicomcrypt.net.forward import Forwarder
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
    seconds: float = 0.0


def classify(exc: BaseException) -> tuple[st.StoreStatus, str]:
    """The status and Error Comment for a failure: the receiver's own first, then the library's."""
    if isinstance(exc, DuplicateConflictError):
        return st.DUPLICATE_CONFLICT, "SOP Instance UID already stored with other content"
    if isinstance(exc, ForwardUnreachableError):
        return st.FORWARD_UNREACHABLE, st.comment(str(exc))
    if isinstance(exc, ForwardRefusedError):
        return st.FORWARD_REFUSED, st.comment(f"downstream {exc}")
    return st.status_for_error(exc)


class StoreHandler:
    """Runs the pipeline for each received instance, under one receiver's configuration.

    Thread-safe: pynetdicom calls :meth:`handle` from each association's own thread; the only
    shared state is the file system (atomic, no-clobber writes) and the forwarder (locked).
    """

    def __init__(self, config: "ReceiverConfig", quarantine: Quarantine, forwarder: "Forwarder | None") -> None:
        self.config = config
        self.quarantine = quarantine
        self.forwarder = forwarder

    def handle(self, raw: bytes, decode: Any, context: dict[str, Any]) -> InstanceResult:
        """``raw``: the instance as received (Part 10 bytes); ``decode()`` returns its data set
        with file meta; ``context``: calling AE and peer, for logs and quarantine sidecars."""
        started = time.perf_counter()
        uids: dict[str, str] = {}
        try:
            ds = _decode(decode)
            uids = _uid_fields(ds)
            result = self._accept(ds, raw, uids)
        except Exception as exc:  # every failure becomes a status; nothing escapes to pynetdicom
            status, comment = classify(exc)
            quarantined = None
            if not status.retry:
                quarantined = self._quarantine(raw, status, comment, {**context, **uids})
            return InstanceResult(
                status, "refused", comment, quarantined=quarantined,
                seconds=time.perf_counter() - started, **_result_uids(uids),
            )
        return InstanceResult(**{**result, "seconds": time.perf_counter() - started})

    def _accept(self, ds: Dataset, raw: bytes, uids: dict[str, str]) -> dict[str, Any]:
        config = self.config
        info = dicom.read_private_block(ds)
        mode = None
        if info is None:
            if dicom.has_pixel_data(ds) and not config.accept_plain:
                raise NotEncryptedError("plain image refused: not encrypted by dicomcrypt")
            outcome, data, filed = "passed through", raw, ds
        elif config.store == "encrypted":
            header = read_header(info.envelope)
            if config.keys is not None:  # a vault with a key also authenticates what it keeps
                open_envelope(info.envelope, keys=config.keys, binding=instance_binding(*dicom.uids(ds)))
            outcome, data, filed, mode = "kept encrypted", raw, ds, header.mode.name.lower()
        else:
            from dicomcrypt.pipeline import decrypt_instance  # numpy/codec only when restoring

            restored = decrypt_instance(ds, keys=config.keys).dataset
            _normalise_encoding(restored)
            outcome, data, filed, mode = "restored", dicom_to_bytes(restored), restored, _mode_of(info)
            uids = _uid_fields(restored)  # a lossy restore is a new instance with a new UID

        path = None
        if config.out is not None:
            path = instance_path(config.out, uids["study_uid"], uids["series_uid"], uids["sop_instance_uid"])
            filed_as = file_instance(
                data, path, policy=config.duplicates, quarantine=self.quarantine,
                context={**uids, "status": f"0x{st.DUPLICATE_CONFLICT.code:04X}"},
            )
            if filed_as != "stored":
                outcome = filed_as
        if self.forwarder is not None:
            self.forwarder.send(filed)
        return {
            "status": st.SUCCESS, "outcome": outcome, "mode": mode, "path": path,
            "forwarded": self.forwarder is not None, **_result_uids(uids),
        }

    def _quarantine(self, raw: bytes, status: st.StoreStatus, comment: str, context: dict[str, Any]) -> Path | None:
        try:
            return self.quarantine.keep(
                raw, reason=status.name, context={**context, "status": f"0x{status.code:04X}", "comment": comment}
            )
        except OSError:
            return None  # the receiver logs the refusal; a full disk must not hide the status


def _decode(decode: Any) -> Dataset:
    """The data set, fully parsed now so a damaged one fails here and not halfway through."""
    try:
        ds = decode()
        ds.walk(lambda _ds, _elem: None)
    except Exception as exc:
        raise NotDicomError(f"data set cannot be decoded ({type(exc).__name__})") from None
    if len(ds) == 0:
        raise NotDicomError("data set is empty")
    _check_identity(ds)
    return ds


def _check_identity(ds: Dataset) -> None:
    """The data set must name the SOP class and instance the C-STORE request announced (PS3.4
    B.2.3): bytes that merely parse, or an instance sent under another's UID, are not filed."""
    meta = ds.file_meta
    for keyword, announced in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        value = ds.get(keyword)
        if not value:
            raise NotDicomError(f"data set has no {keyword}: not a DICOM instance")
        if str(value) != str(meta.get(announced, value)):
            raise NotDicomError(f"data set {keyword} differs from the C-STORE request")


def _uid_fields(ds: Dataset) -> dict[str, str]:
    sop_class, sop_instance, study, series = dicom.uids(ds)
    return {"sop_class_uid": sop_class, "sop_instance_uid": sop_instance, "study_uid": study, "series_uid": series}


def _result_uids(uids: dict[str, str]) -> dict[str, str]:
    return {k: uids[k] for k in ("study_uid", "series_uid", "sop_instance_uid") if k in uids}


def _mode_of(info: "dicom.PrivateInfo") -> str:
    return str(info.mode).lower()


def _normalise_encoding(ds: Dataset) -> None:
    """Restored instances are filed little endian and undeflated (the same values, simpler bytes)."""
    if is_big_endian(ds):
        dicom.convert_to_little_endian(ds)
    tsyntax = dicom.transfer_syntax(ds)
    if tsyntax is not None and UID(tsyntax).is_deflated:
        set_transfer_syntax(ds, ExplicitVRLittleEndian)
        ds.set_original_encoding(False, True, ds.original_character_set)

