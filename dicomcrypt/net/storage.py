"""Where the receiving node files instances: the study/series/instance tree, duplicates, quarantine.

Rules kept here so every path through ``serve`` obeys them:

- good data lives at ``out/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``, each
  file written to a hidden temporary file, fsynced and renamed (:mod:`dicomcrypt.files`), so a
  crash or a dying sender never leaves a partial file among good data;
- UIDs become path parts only after :func:`safe_uid`: a conformant UID is its own name, any
  other gets a readable part plus a hash of the whole value, so a hostile UID cannot climb out
  of ``out``, two distinct UIDs never share a file, and no name is hidden (starts with a dot);
- a SOP Instance UID already filed is a duplicate: same content is accepted without a rewrite,
  different content is handled by the :data:`DuplicatePolicy`;
- refused instances go to the quarantine folder, each with a JSON sidecar saying why; an
  instance without a dicomcrypt envelope (a plain image refused 0xC005, an undecodable one) is
  kept as its header only, never its pixels (:func:`header_only`), and the folder is pruned to
  a size cap and an age (:meth:`Quarantine.prune`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dicomcrypt.errors import DuplicateConflictError, OutputExistsError
from dicomcrypt.files import dicom_to_bytes, is_hidden, write_bytes_atomic

__all__ = [
    "DUPLICATE_POLICIES",
    "DuplicatePolicy",
    "Quarantine",
    "file_instance",
    "header_only",
    "instance_path",
    "safe_uid",
]

DuplicatePolicy = Literal["keep-first", "replace"]
DUPLICATE_POLICIES: tuple[str, ...] = ("keep-first", "replace")
"""``keep-first`` (default): an instance whose SOP Instance UID is already filed with other
content is refused (status 0xC006) and kept under ``quarantine/duplicates``; the first copy
stays. ``replace``: the new copy replaces the filed one, which moves to ``quarantine/replaced``.
Either way an identical copy is answered success without rewriting the file."""

_CONFORMANT_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
"""PS3.5 9.1: numeric components without leading zeros, separated by single dots."""
_UNSAFE = re.compile(r"[^0-9.]")
_READABLE_MAX = 32
"""How much of a non-conformant UID is kept readable in its name, before the hash."""


def safe_uid(uid: str | None, fallback: str) -> str:
    """``uid`` as one path part, distinct for distinct UIDs and never hidden.

    A conformant UID (PS3.5 9.1, at most 64 characters) is used as it is: digits and dots, no
    leading dot. Anything else (letters, slashes, ``..``, control characters, too long) becomes
    its first characters with everything but digits and dots as ``_`` and leading dots dropped,
    then ``_`` and the SHA-256 of the whole value (32 hex digits): readable, safe, and injective,
    and never equal to a conformant UID's name (it has an underscore). Only the DICOM padding
    (trailing spaces and NULs) is ignored; an empty UID becomes ``fallback`` (letters and a
    hyphen, so it matches neither kind).
    """
    text = (uid or "").rstrip(" \0")
    if not text:
        return fallback
    if len(text) <= 64 and _CONFORMANT_UID.fullmatch(text):
        return text
    readable = _UNSAFE.sub("_", text[:_READABLE_MAX]).lstrip(".") or "uid"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{readable}_{digest}"


def instance_path(out: Path, study_uid: str, series_uid: str, sop_instance_uid: str) -> Path:
    """``out/<study>/<series>/<instance>.dcm`` with every UID made safe (:func:`safe_uid`)."""
    return (
        out
        / safe_uid(study_uid, "unknown-study")
        / safe_uid(series_uid, "unknown-series")
        / f"{safe_uid(sop_instance_uid, 'unknown-instance')}.dcm"
    )


def _same_content(path: Path, data: bytes) -> bool:
    """Whether the filed ``path`` holds the same instance as ``data``: equal bytes, or equal
    data sets (the same instance sent again in another transfer syntax)."""
    existing = path.read_bytes()
    if existing == data:
        return True
    try:
        return pydicom.dcmread(io.BytesIO(existing)) == pydicom.dcmread(io.BytesIO(data))
    except Exception:  # a filed file we cannot parse is not "the same"
        return False


def file_instance(
    data: bytes, path: Path, *, policy: DuplicatePolicy, quarantine: Quarantine, context: dict[str, Any]
) -> Literal["stored", "duplicate", "replaced"]:
    """Write ``data`` at ``path`` atomically, applying the duplicate policy if it is taken.

    Returns what happened; raises :class:`DuplicateConflictError` (after quarantining the new
    copy) for a conflicting duplicate under ``keep-first``, and ``OSError`` when writing fails.
    """
    try:
        write_bytes_atomic(data, path)
        return "stored"
    except OutputExistsError:
        pass
    if _same_content(path, data):
        return "duplicate"
    if policy == "replace":
        quarantine.keep(path.read_bytes(), reason="replaced by a newer copy", folder="replaced", context=context)
        write_bytes_atomic(data, path, force=True)
        return "replaced"
    quarantine.keep(data, reason="SOP Instance UID already filed with other content", folder="duplicates",
                    context=context)
    raise DuplicateConflictError(path)


_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_BULK_BYTES = 1024
"""Binary values longer than this are bulk data (pixels, waveforms, overlays, documents)."""
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Float, Double Float and plain Pixel Data: removed whatever their length."""


def header_only(ds: Dataset) -> bytes:
    """``ds`` as Part 10 bytes without Pixel Data and without any other bulk binary value (in
    sequences too): what the quarantine keeps of an instance that carries no envelope, so an
    administrator can see what was sent and by whom, but no image is stored in the clear."""
    record = Dataset()
    record.update(ds)  # a shallow copy: the elements removed below stay in the caller's data set
    record.file_meta = ds.file_meta
    _strip_bulk(record)
    return dicom_to_bytes(record)


def _strip_bulk(ds: Dataset) -> None:
    for elem in list(ds.elements()):
        if not isinstance(elem, DataElement):  # a raw element never decoded: decode to judge it
            elem = ds[elem.tag]
        if elem.VR == "SQ":  # a new element: the caller's sequence is left as it was
            ds[elem.tag] = DataElement(elem.tag, "SQ", [_stripped_copy(item) for item in elem.value])
        elif int(elem.tag) in _PIXEL_TAGS or (elem.VR in _BULK_VRS and len(elem.value or b"") > _BULK_BYTES):
            del ds[elem.tag]


def _stripped_copy(item: Dataset) -> Dataset:
    copy = Dataset()
    copy.update(item)
    _strip_bulk(copy)
    return copy


@dataclass
class Quarantine:
    """The folder of refused instances: ``<root>/[<folder>/]<time>-<SOPInstanceUID>-<random>.dcm``
    beside a ``.json`` sidecar (reason, status, calling AE, UIDs, time in UTC, what was kept).

    The data file is written first and the sidecar second, both atomically, so a sidecar
    always describes a complete file. The folder is bounded: records older than ``max_age_s``
    are deleted and, once a record would take it past ``max_bytes``, the oldest records down to
    nine tenths of the cap (:meth:`prune`: at start, hourly, and when the cap is reached, at most
    once a second), so a flood of refusals cannot fill the disk.
    """

    root: Path
    max_bytes: int = 1024 * 1024 * 1024
    max_age_s: float = 30 * 86400
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _size: int | None = field(default=None, repr=False, compare=False)
    """Bytes in the folder as of the last prune plus what was kept since; ``None``: not counted yet."""
    _pruned_at: float = field(default=0.0, repr=False, compare=False)

    def keep(self, data: bytes | None, *, reason: str, context: dict[str, Any], folder: str = "",
             kept: str = "as received") -> Path:
        """Keep ``data`` (``None``: the sidecar only) with its note; returns the sidecar's path
        when no data is kept, else the data file's."""
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.6f}"[1:].replace(".", "")
        sop = safe_uid(context.get("sop_instance_uid"), "unknown-instance")
        target = (self.root / folder if folder else self.root) / f"{stamp}-{sop}-{secrets.token_hex(3)}.dcm"
        sidecar = {
            "reason": reason,
            **context,
            "received_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "bytes": len(data) if data is not None else 0,
            "kept": kept if data is not None else "note only",
        }
        note = json.dumps(sidecar, indent=2, sort_keys=True).encode() + b"\n"
        self._make_room(len(data or b"") + len(note))
        if data is not None:
            write_bytes_atomic(data, target)
        write_bytes_atomic(note, target.with_suffix(".json"))
        return target if data is not None else target.with_suffix(".json")

    def _make_room(self, adding: int) -> None:
        with self._lock:
            now = time.monotonic()
            due = self._size is None or now - self._pruned_at > 3600
            over = self._size is not None and self._size + adding > self.max_bytes and now - self._pruned_at > 1
            if due or over:
                self._prune_locked(reserve=adding)
            self._size = (self._size or 0) + adding

    def prune(self) -> int:
        """Delete records past the age, then the oldest past the size cap; returns how many."""
        with self._lock:
            return self._prune_locked(reserve=0)

    def _prune_locked(self, *, reserve: int) -> int:
        records = _records(self.root)
        cutoff = time.time() - self.max_age_s
        total = sum(size for _, size, _ in records)
        # past the cap, make room for a tenth of it, so a flood is not one folder scan per record
        target = self.max_bytes if total + reserve <= self.max_bytes else self.max_bytes - self.max_bytes // 10
        removed = 0
        for mtime, size, files in records:  # oldest first
            if mtime >= cutoff and total + reserve <= target:
                break
            for path in files:
                path.unlink(missing_ok=True)
            total -= size
            removed += 1
        self._size, self._pruned_at = total, time.monotonic()
        return removed


def _records(root: Path) -> list[tuple[float, int, list[Path]]]:
    """Every quarantine record under ``root`` (a data file and/or its sidecar, by name), oldest first."""
    groups: dict[Path, list[Path]] = {}
    for path in root.rglob("*") if root.is_dir() else ():
        if path.suffix in (".dcm", ".json") and not is_hidden(path.name) and path.is_file():
            groups.setdefault(path.with_suffix(""), []).append(path)
    records = []
    for files in groups.values():
        try:
            stats = [path.stat() for path in files]
        except FileNotFoundError:  # pruned by another thread meanwhile
            continue
        records.append((min(st.st_mtime for st in stats), sum(st.st_size for st in stats), files))
    return sorted(records, key=lambda record: record[0])
