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
- refused instances go to the quarantine folder, each with a JSON sidecar saying why.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydicom

from dicomcrypt.errors import DuplicateConflictError, OutputExistsError
from dicomcrypt.files import write_bytes_atomic

__all__ = [
    "DUPLICATE_POLICIES",
    "DuplicatePolicy",
    "Quarantine",
    "file_instance",
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


@dataclass(frozen=True)
class Quarantine:
    """The folder of refused instances: ``<root>/[<folder>/]<time>-<SOPInstanceUID>-<random>.dcm``
    beside a ``.json`` sidecar (reason, status, calling AE, UIDs, time in UTC).

    The data file is written first and the sidecar second, both atomically, so a sidecar
    always describes a complete file.
    """

    root: Path

    def keep(self, data: bytes, *, reason: str, context: dict[str, Any], folder: str = "") -> Path:
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.6f}"[1:].replace(".", "")
        sop = safe_uid(context.get("sop_instance_uid"), "unknown-instance")
        target = (self.root / folder if folder else self.root) / f"{stamp}-{sop}-{secrets.token_hex(3)}.dcm"
        sidecar = {
            "reason": reason,
            **context,
            "received_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "bytes": len(data),
        }
        write_bytes_atomic(data, target)
        write_bytes_atomic(json.dumps(sidecar, indent=2, sort_keys=True).encode() + b"\n", target.with_suffix(".json"))
        return target
