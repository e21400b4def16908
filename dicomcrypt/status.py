"""The DIMSE C-STORE statuses a refused instance gets from the library, in one table.

PS3.4 Annex B.2.3 gives C-STORE its ranges: ``0xA7xx`` Refused: Out of Resources (the sender may
retry later), ``0xA9xx`` Error: Data Set does not match SOP Class, ``0xCxxx`` Error: Cannot
understand. Within them we pick one code per cause so a sender's log says what went wrong;
the Error Comment (0000,0902) repeats it in at most 64 characters. pynetdicom's own codes
(``0xC210``-``0xC215``, raised when a handler fails) are avoided.

These are the statuses :func:`dicomcrypt.receive.receive` decides, whoever received the
instance: the ``serve`` SCP and every PACS storage hook answer the same code for the same
cause. :func:`status_for_error` is the one mapping from library errors to them. The receiving
node adds statuses only it can meet (duplicates, forwarding, shutting down) in
:mod:`dicomcrypt.net.status`, whose ``STORE_STATUSES`` is the full table that
``docs/conformance.md`` quotes.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomcrypt.errors import (
    DecryptionError,
    EnvelopeFormatError,
    IntegrityError,
    InvalidInputError,
    KeyNotFoundError,
    ModelError,
    NotEncryptedError,
    PayloadFormatError,
)

__all__ = [
    "StoreStatus",
    "SUCCESS",
    "OUT_OF_RESOURCES",
    "DECRYPTION_FAILED",
    "UNKNOWN_KEY",
    "ENVELOPE_DAMAGED",
    "CANNOT_UNDERSTAND",
    "NOT_ENCRYPTED",
    "PROCESSING_FAILURE",
    "RECEIVE_STATUSES",
    "COMMENT_MAX",
    "comment",
    "status_for_error",
    "DECRYPTION_COMMENT",
]

COMMENT_MAX = 64
"""Error Comment (0000,0902) is LO: at most 64 characters."""


@dataclass(frozen=True)
class StoreStatus:
    """One C-STORE response status: its code, a short name, and when the receiver answers it."""

    code: int
    name: str
    meaning: str
    when: str
    retry: bool = False
    """Whether the same instance may succeed if sent again later (transient cause)."""

    @property
    def is_success(self) -> bool:
        return self.code == 0x0000

    def __str__(self) -> str:
        return f"0x{self.code:04X} {self.name}"


SUCCESS = StoreStatus(
    0x0000, "success", "Stored (or forwarded and acknowledged)",
    "the instance was verified, restored (or kept encrypted) and is durably on disk (written to a "
    "temporary file, fsynced, renamed), or the downstream peer answered success; also for a "
    "duplicate whose content equals the instance already filed",
)
OUT_OF_RESOURCES = StoreStatus(
    0xA700, "out of resources", "Refused: Out of Resources",
    "the instance could not be written: disk full, quota, permission or other I/O error",
    retry=True,
)
DECRYPTION_FAILED = StoreStatus(
    0xC001, "decryption failed", "Error: Cannot understand (authentication failed)",
    "AES-GCM authentication failed: wrong key, tampered ciphertext, or edited bound attributes "
    "(UIDs, key id, model id). One constant comment for every cause",
)
UNKNOWN_KEY = StoreStatus(
    0xC002, "unknown key", "Error: Cannot understand (no key for the envelope's key id)",
    "the envelope names a key id that none of the receiver's keys has; the comment names it",
)
ENVELOPE_DAMAGED = StoreStatus(
    0xC003, "envelope damaged", "Error: Cannot understand (damaged or unsupported envelope)",
    "the envelope or its payload is malformed, truncated, of an unknown version, names an "
    "unavailable model, or the restored pixels miss their digest",
)
CANNOT_UNDERSTAND = StoreStatus(
    0xC004, "cannot understand", "Error: Cannot understand (not a decodable DICOM data set)",
    "the data set cannot be decoded, lacks SOP Class/Instance UIDs, or its pixels cannot be read",
)
NOT_ENCRYPTED = StoreStatus(
    0xC005, "not encrypted", "Error: Cannot understand (plain image refused)",
    "an image instance without a dicomcrypt envelope, at a receiver that does not accept plain "
    "images (the default; --accept-plain files them as received)",
)
PROCESSING_FAILURE = StoreStatus(
    0x0110, "processing failure", "Processing failure (general status)",
    "an unexpected internal error; the receiver log has the details",
)

RECEIVE_STATUSES: tuple[StoreStatus, ...] = (
    SUCCESS,
    OUT_OF_RESOURCES,
    DECRYPTION_FAILED,
    UNKNOWN_KEY,
    ENVELOPE_DAMAGED,
    CANNOT_UNDERSTAND,
    NOT_ENCRYPTED,
    PROCESSING_FAILURE,
)
"""Every status :func:`status_for_error` (and so :func:`dicomcrypt.receive.receive`) can give."""


def comment(text: str) -> str:
    """``text`` as a valid Error Comment: one line of printable ASCII, at most 64 characters."""
    clean = "".join(ch if " " <= ch <= "~" and ch != "\\" else " " for ch in text)
    clean = " ".join(clean.split())
    return clean if len(clean) <= COMMENT_MAX else clean[: COMMENT_MAX - 3].rstrip() + "..."


DECRYPTION_COMMENT = "decryption failed: wrong key or altered data"
"""One constant comment for every authentication failure (see DecryptionError)."""


def status_for_error(exc: BaseException) -> tuple[StoreStatus, str]:
    """The status and Error Comment for a failure of the library (the comment never carries key
    material). Failures of the receiving node itself (duplicates, forwarding) are classified by it."""
    if isinstance(exc, DecryptionError):
        return DECRYPTION_FAILED, DECRYPTION_COMMENT
    if isinstance(exc, KeyNotFoundError):
        return UNKNOWN_KEY, comment(f"no key for key id {' or '.join(exc.needed)}")
    if isinstance(exc, (EnvelopeFormatError, PayloadFormatError, IntegrityError, ModelError)):
        return ENVELOPE_DAMAGED, comment(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, NotEncryptedError):
        return NOT_ENCRYPTED, comment(str(exc))
    if isinstance(exc, InvalidInputError):
        return CANNOT_UNDERSTAND, comment(str(exc))
    if isinstance(exc, OSError):
        return OUT_OF_RESOURCES, comment(f"cannot store: {exc.strerror or type(exc).__name__}")
    return PROCESSING_FAILURE, comment(f"internal error: {type(exc).__name__}")
