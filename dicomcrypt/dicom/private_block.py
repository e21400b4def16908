"""The dicomcrypt private block: creator "DICOMCRYPT 1" in group 0x0011.

Elements are addressed by creator and offset, never by a fixed (0011,10xx) tag: another
vendor's block may already hold (0011,0010), which pushes ours to (0011,0011) -> (0011,11xx).
The readable elements let an administrator see what a file is without a key; they are
unauthenticated copies of what the envelope header binds (:func:`check_readable_elements`, which
restoring, re-keying and every receiver apply, refuses ones that disagree).
Layout and dictionary files: ``docs/private-block.md``, ``docs/dicom/``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from pydicom.datadict import add_private_dict_entries
from pydicom.dataset import Dataset, PrivateBlock

from dicomcrypt.errors import DecryptionError, EnvelopeFormatError

if TYPE_CHECKING:
    from dicomcrypt.envelope import EnvelopeHeader

__all__ = [
    "PRIVATE_CREATOR",
    "PRIVATE_ENTRIES",
    "PRIVATE_GROUP",
    "PrivateInfo",
    "check_readable_elements",
    "read_private_block",
    "remove_private_block",
    "write_private_block",
]

PRIVATE_CREATOR = "DICOMCRYPT 1"
PRIVATE_GROUP = 0x0011
MODES = ("LOSSLESS", "LOSSY", "STANDARD")

# Offsets within the block (the low byte of the element number).
_VERSION, _MODE, _KEY_IDS, _MODEL_ID, _ENVELOPE_LENGTH, _ENVELOPE = 0x01, 0x02, 0x03, 0x04, 0x05, 0x10

#: (offset, VR, VM, name) of each element; the source for pydicom's dictionary and the docs.
PRIVATE_ENTRIES: tuple[tuple[int, str, str, str], ...] = (
    (_VERSION, "US", "1", "DicomCryptFormatVersion"),
    (_MODE, "CS", "1", "DicomCryptMode"),
    (_KEY_IDS, "LO", "1-n", "DicomCryptKeyIDs"),
    (_MODEL_ID, "LO", "1", "DicomCryptModelID"),
    (_ENVELOPE_LENGTH, "UL", "1", "DicomCryptEnvelopeLength"),
    (_ENVELOPE, "OB", "1", "DicomCryptEnvelope"),
)

add_private_dict_entries(
    PRIVATE_CREATOR,
    {(PRIVATE_GROUP << 16) | offset: (vr, vm, name, "") for offset, vr, vm, name in PRIVATE_ENTRIES},
)

_LO = re.compile(r"^[^\\\x00-\x1f]{1,64}$")


@dataclasses.dataclass(frozen=True)
class PrivateInfo:
    """What the private block holds."""

    format_version: int
    mode: str  # LOSSLESS, LOSSY or STANDARD
    key_ids: tuple[str, ...]
    model_id: str | None
    envelope: bytes

    def __post_init__(self) -> None:
        """Refuse values the VRs cannot hold, so a written block always reads back equal."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if not 0 <= int(self.format_version) <= 0xFFFF:
            raise ValueError(f"format version {self.format_version} does not fit US")
        object.__setattr__(self, "key_ids", tuple(self.key_ids))
        if not self.key_ids:
            raise ValueError("at least one key id is needed")
        for value in (*self.key_ids, *([self.model_id] if self.model_id else [])):
            if not _LO.match(value) or value != value.strip():
                raise ValueError(f"{value!r} is not a valid LO value")
        object.__setattr__(self, "envelope", bytes(self.envelope))


def write_private_block(ds: Dataset, info: PrivateInfo) -> None:
    """Write ``info`` into our block (replacing an existing one), found or created by creator.

    A replaced block keeps its slot: it may have been placed off a slot that an encrypted
    (identity-protected) original private block will take back on re-identification.
    """
    try:
        slot: int | None = _our_block(ds).block_start >> 8
    except KeyError:
        slot = None
    remove_private_block(ds)
    if slot is not None:
        ds.add_new((PRIVATE_GROUP << 16) | slot, "LO", PRIVATE_CREATOR)
    block = _our_block(ds, create=True)
    block.add_new(_VERSION, "US", int(info.format_version))
    block.add_new(_MODE, "CS", info.mode)
    block.add_new(_KEY_IDS, "LO", list(info.key_ids) if len(info.key_ids) > 1 else info.key_ids[0])
    if info.model_id:
        block.add_new(_MODEL_ID, "LO", info.model_id)
    block.add_new(_ENVELOPE_LENGTH, "UL", len(info.envelope))
    block.add_new(_ENVELOPE, "OB", info.envelope)


def _our_block(ds: Dataset, create: bool = False) -> PrivateBlock:
    """``ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=create)``, the same block and
    cache entry, without pydicom's sort of every tag of the data set when group 0x0011 holds no
    private creator at all (most originals): that sort was a share of each pipeline call (issue 14).
    """
    key = (PRIVATE_GROUP, PRIVATE_CREATOR)
    base = PRIVATE_GROUP << 16
    if key in ds._private_blocks or any((base | el) in ds._dict for el in range(0x10, 0x100)):
        return ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=create)
    if not create:
        raise KeyError(f"Private creator '{PRIVATE_CREATOR}' not found")
    # What pydicom does when no creator slot is taken: the first slot, 0x10.
    ds.add_new(base | 0x10, "LO", PRIVATE_CREATOR)
    block = ds._private_blocks[key] = PrivateBlock(key, ds, 0x10)
    return block


def read_private_block(ds: Dataset) -> PrivateInfo | None:
    """Our block's content, or None when ``ds`` has no "DICOMCRYPT 1" block.

    ``EnvelopeFormatError`` when the block exists but is malformed, or when it does not but an
    envelope sits in the group all the same (its creator element damaged or removed).
    """
    try:
        block = _our_block(ds)
    except KeyError:
        _refuse_orphaned_envelope(ds)
        return None

    def value(offset: int, name: str, required: bool = True) -> Any:
        if offset not in block:
            if required:
                raise EnvelopeFormatError(f"dicomcrypt private block has no {name}")
            return None
        return block[offset].value

    envelope = value(_ENVELOPE, "envelope")
    if not isinstance(envelope, (bytes, bytearray)):
        raise EnvelopeFormatError("dicomcrypt envelope element is not binary")
    length = value(_ENVELOPE_LENGTH, "envelope length", required=False)
    if length is not None:
        length = int(length)
        # Writers pad odd values to even length; the stored length drops the pad byte.
        if not len(envelope) - 1 <= length <= len(envelope):
            raise EnvelopeFormatError(
                f"dicomcrypt envelope is {len(envelope)} bytes, its length element says {length}"
            )
        envelope = envelope[:length]
    key_ids = value(_KEY_IDS, "key id")
    key_ids = [key_ids] if isinstance(key_ids, str) else list(key_ids or [])
    model_id = value(_MODEL_ID, "model id", required=False)
    try:
        return PrivateInfo(
            format_version=int(value(_VERSION, "format version")),
            mode=str(value(_MODE, "mode")),
            key_ids=tuple(str(k) for k in key_ids),
            model_id=str(model_id) if model_id else None,
            envelope=bytes(envelope),
        )
    except (TypeError, ValueError) as exc:
        raise EnvelopeFormatError(f"dicomcrypt private block is malformed: {exc}") from exc


_ENVELOPE_STARTS = (b"DCEV\x01", b"DCEV\x02")
"""The first bytes of every envelope version (``envelope.MAGIC`` and the version byte)."""


def _refuse_orphaned_envelope(ds: Dataset) -> None:
    """``EnvelopeFormatError`` if an element of our group holds an envelope but no "DICOMCRYPT 1"
    creator claims it: a damaged creator must not turn an encrypted instance into a "plain" one
    whose placeholder is then filed or passed through as if it were the image.

    Cheap: only the private data elements of group 0x0011, and only their first bytes.
    """
    for tag in ds._dict:
        if tag >> 16 != PRIVATE_GROUP or tag & 0xFFFF < 0x1000:
            continue
        value = ds._dict[tag].value  # raw or decoded: OB and UN values are bytes either way
        if isinstance(value, (bytes, bytearray)) and bytes(value[:5]) in _ENVELOPE_STARTS:
            raise EnvelopeFormatError(
                f"dicomcrypt envelope found in ({PRIVATE_GROUP:04X},{tag & 0xFFFF:04X}) "
                "but its private creator is damaged"
            )


def check_readable_elements(info: PrivateInfo, header: EnvelopeHeader) -> None:
    """Refuse readable elements that disagree with the envelope header they copy.

    They are unauthenticated, so an administrator (or a receiver's routing) must not be shown a
    mode, model or key id other than the one the envelope binds. The refusal is the constant
    :class:`DecryptionError`, as for any other edit of what the envelope binds.
    """
    if (
        info.mode != header.mode.name
        or (info.model_id or "") != header.model_id
        or tuple(info.key_ids) != tuple(header.key_ids)
    ):
        raise DecryptionError(DecryptionError.MESSAGE)


def remove_private_block(ds: Dataset) -> bool:
    """Delete our creator element and every element of its block; True if one was there."""
    removed = False
    while True:
        try:
            block = _our_block(ds)
        except KeyError:
            return removed
        start = (PRIVATE_GROUP << 16) | block.block_start
        # Probe the block's 256 tags rather than compare every tag of the data set (BaseTag
        # comparisons run in Python); deleted in tag order, as before.
        for tag in [t for t in range(start, start + 0x100) if t in ds._dict]:
            del ds[tag]
        creator_tag = (PRIVATE_GROUP << 16) | (block.block_start >> 8)
        del ds[creator_tag]
        removed = True
