"""Instances with vendor private elements whose value length does not fit the VR pydicom's
private dictionary gives them: what real scanners send, and what a receiver must not refuse.

``SIEMENS MR HEADER`` (0019,xx0E) is FD (8-byte values) and (0019,xx12) SL (4-byte values) in
pydicom's private dictionary; here they hold 6 bytes each, as the vendor's own encoding may. A
third one sits inside a sequence item. In Implicit VR the reader must take the dictionary's VR
and the value does not decode; in Explicit VR they travel as UN, or labelled with the
dictionary's VR (``labelled=True``), and pydicom converts them to that VR: the same failure.
"""

from __future__ import annotations

import io
import struct

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

__all__ = ["QUIRK_CREATOR", "QUIRK_VALUES", "quirk_values", "with_vendor_quirks", "quirk_bytes"]

QUIRK_CREATOR = "SIEMENS MR HEADER"
#: element offset in the block -> raw value (wrong length for the dictionary's VR)
QUIRK_VALUES = {0x0E: b"\x01\x02\x03\x04\x05\x06", 0x12: b"ABCDEF"}
_NESTED = b"\x10\x20\x30\x40\x50\x60"


def with_vendor_quirks(ds: Dataset) -> Dataset:
    """``ds`` (modified and returned) with the wrong-length private elements, one in a sequence."""
    block = ds.private_block(0x0019, QUIRK_CREATOR, create=True)
    for offset, value in QUIRK_VALUES.items():
        block.add_new(offset, "UN", value)
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item.private_block(0x0019, QUIRK_CREATOR, create=True).add_new(0x0E, "UN", _NESTED)
    ds.ReferencedImageSequence = Sequence([item])
    return ds


def quirk_bytes(ds: Dataset, syntax: str, *, labelled: bool = False) -> bytes:
    """Part 10 bytes of ``ds`` in Implicit or Explicit VR Little Endian. ``labelled``: in
    Explicit VR, the top-level quirk elements carry the dictionary's VR (FD, SL), not UN."""
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True, enforce_file_format=True)
    data = buffer.getvalue()
    if labelled and syntax == ExplicitVRLittleEndian:
        start = ds.private_block(0x0019, QUIRK_CREATOR).block_start
        for offset, vr in ((0x0E, b"FD"), (0x12, b"SL")):
            tag = struct.pack("<HH", 0x0019, start + offset)
            value = QUIRK_VALUES[offset]
            old = tag + b"UN\x00\x00" + struct.pack("<I", len(value))
            assert data.count(old) == 1
            data = data.replace(old, tag + vr + struct.pack("<H", len(value)))
    return data


def quirk_values(ds: Dataset) -> dict[str, bytes]:
    """The quirk elements' value bytes as ``ds`` holds them (raw, as read), top level and nested."""
    found = {}
    block = ds.private_block(0x0019, QUIRK_CREATOR)
    for offset in QUIRK_VALUES:
        found[f"{offset:02X}"] = _raw(ds, block.get_tag(offset))
    item = ds.ReferencedImageSequence[0]
    found["nested"] = _raw(item, item.private_block(0x0019, QUIRK_CREATOR).get_tag(0x0E))
    return found


def _raw(ds: Dataset, tag: int) -> bytes:
    elem = ds[tag]
    assert elem.VR == "UN", f"{tag:08X} is {elem.VR}: not kept raw"
    return bytes(elem.value)


def read(data: bytes) -> Dataset:
    """pydicom's own reading of ``data`` (no tolerance of ours)."""
    return pydicom.dcmread(io.BytesIO(data))
