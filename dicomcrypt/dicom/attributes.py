"""Snapshot and restore of the attributes the placeholder changes.

The snapshot travels inside the encrypted payload. It is encoded DICOM (Explicit VR Little
Endian, written by pydicom) so values, VRs and sequences come back exactly, plus a small JSON
header with the tags that were absent (so restore deletes what the placeholder added) and the
original Transfer Syntax UID.

Blob layout: ``MAGIC`` (8 bytes) | header length (uint32 LE) | header JSON (UTF-8) | dataset.
The pixel elements themselves (Pixel Data, Float/Double Float Pixel Data) are not here: they are
the payload proper, written back by :func:`dicomcrypt.dicom.write_frames`.

Anyone who knows a node's public recipient string can seal a payload for it, so a snapshot is
untrusted input: restore puts back only :data:`SNAPSHOT_TAGS` and the :data:`OVERLAY_GROUPS`,
the fixed list every snapshot is made of, and refuses a snapshot holding anything else (a
SOP Instance UID, a Patient Name): that is not a snapshot dicomcrypt wrote.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian

from dicomcrypt.dicom.dataset_copy import independent_element_copy
from dicomcrypt.dicom.encoding import (
    is_big_endian,
    set_transfer_syntax,
    swap_binary_values,
    transfer_syntax,
)
from dicomcrypt.errors import PayloadFormatError

__all__ = [
    "OVERLAY_GROUPS",
    "SNAPSHOT_TAGS",
    "restore_attributes",
    "snapshot_attributes",
]

MAGIC = b"DCATTR1\n"
_VERSION = 1
_SPECIFIC_CHARACTER_SET = 0x00080005

#: Every attribute the placeholder (or write_frames) may change or delete, and why.
#: The one place that decides what is saved: change it here, nowhere else.
SNAPSHOT_TAGS: dict[int, str] = {
    # Image Pixel module: rewritten to describe the placeholder image.
    0x00280002: "Samples per Pixel: set by the placeholder/write_frames",
    0x00280004: "Photometric Interpretation: a JPEG YBR original becomes an RGB placeholder",
    0x00280006: "Planar Configuration: set or removed with the samples per pixel",
    0x00280008: "Number of Frames: rewritten by write_frames",
    0x00280010: "Rows: the placeholder is small",
    0x00280011: "Columns: the placeholder is small",
    0x00280100: "Bits Allocated: rewritten by write_frames",
    0x00280101: "Bits Stored: rewritten by write_frames",
    0x00280102: "High Bit: rewritten by write_frames",
    0x00280103: "Pixel Representation: rewritten by write_frames",
    # Values computed from the original pixels: false for the placeholder, so removed.
    0x00280106: "Smallest Image Pixel Value: removed by the placeholder",
    0x00280107: "Largest Image Pixel Value: removed by the placeholder",
    0x00280108: "Smallest Pixel Value in Series: removed by the placeholder",
    0x00280109: "Largest Pixel Value in Series: removed by the placeholder",
    # Pixel padding: describes the original pixel values; kept by the placeholder but saved so
    # any policy change there cannot lose it.
    0x00280120: "Pixel Padding Value",
    0x00280121: "Pixel Padding Range Limit",
    0x00280122: "Float Pixel Padding Value",
    0x00280123: "Double Float Pixel Padding Value",
    0x00280124: "Float Pixel Padding Range Limit",
    0x00280125: "Double Float Pixel Padding Range Limit",
    # VOI: the placeholder overrides the window only when the original one would hide the text.
    0x00281050: "Window Center: may be overridden by the placeholder",
    0x00281051: "Window Width: may be overridden by the placeholder",
    0x00281055: "Window Center & Width Explanation: removed with an overridden window",
    0x00281056: "VOI LUT Function: removed with an overridden window",
    0x00283010: "VOI LUT Sequence: removed with an overridden window",
    # Palette colour LUTs: the placeholder of a palette image keeps them (it draws with the
    # darkest and brightest entries); saved so restore never depends on that choice.
    0x00281101: "Red Palette Color LUT Descriptor",
    0x00281102: "Green Palette Color LUT Descriptor",
    0x00281103: "Blue Palette Color LUT Descriptor",
    0x00281104: "Alpha Palette Color LUT Descriptor",
    0x00281111: "Large Red Palette Color LUT Descriptor (retired)",
    0x00281112: "Large Green Palette Color LUT Descriptor (retired)",
    0x00281113: "Large Blue Palette Color LUT Descriptor (retired)",
    0x00281199: "Palette Color LUT UID",
    0x00281201: "Red Palette Color LUT Data",
    0x00281202: "Green Palette Color LUT Data",
    0x00281203: "Blue Palette Color LUT Data",
    0x00281204: "Alpha Palette Color LUT Data",
    0x00281211: "Large Red Palette Color LUT Data (retired)",
    0x00281212: "Large Green Palette Color LUT Data (retired)",
    0x00281213: "Large Blue Palette Color LUT Data (retired)",
    0x00281214: "Large Palette Color LUT UID (retired)",
    0x00281221: "Segmented Red Palette Color LUT Data",
    0x00281222: "Segmented Green Palette Color LUT Data",
    0x00281223: "Segmented Blue Palette Color LUT Data",
    0x00281224: "Segmented Alpha Palette Color LUT Data",
    # Encapsulation only: removed when the pixel data becomes native.
    0x7FE00001: "Extended Offset Table: removed with native pixel data",
    0x7FE00002: "Extended Offset Table Lengths: removed with native pixel data",
    # Image content outside Pixel Data: would show the original, so removed.
    0x00880200: "Icon Image Sequence: a thumbnail of the original image",
}

#: Repeating groups saved whole: Overlay Plane (6000-601E,xxxx). Overlays are drawn on the
#: original geometry and can carry image content (ROIs, annotations), so the placeholder
#: removes them.
OVERLAY_GROUPS: tuple[int, ...] = tuple(range(0x6000, 0x6020, 2))


def snapshot_attributes(ds: Dataset) -> bytes:
    """Encode the attributes of ``ds`` the placeholder changes (and which are absent) for later restore."""
    selected = sorted(SNAPSHOT_TAGS)
    group_set = sorted(OVERLAY_GROUPS)
    snap = Dataset()
    swap = is_big_endian(ds)
    for elem in _selected_elements(ds, selected, group_set):
        elem = independent_element_copy(elem)
        if swap:  # the blob is little endian whatever the source was
            swap_binary_values(elem)
        snap.add(elem)
    if _SPECIFIC_CHARACTER_SET in ds._dict and _SPECIFIC_CHARACTER_SET not in snap._dict:
        # Needed to encode and decode text values (LO explanations, labels); not restored.
        snap.add(independent_element_copy(ds[_SPECIFIC_CHARACTER_SET]))
    tsyntax = transfer_syntax(ds)
    header = {
        "version": _VERSION,
        "transfer_syntax": None if tsyntax is None else str(tsyntax),
        "tags": [f"{t:08X}" for t in selected],
        "groups": [f"{g:04X}" for g in group_set],
        "absent": [f"{t:08X}" for t in selected if t not in ds._dict],
    }
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, snap)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + fp.getvalue()


def restore_attributes(ds: Dataset, blob: bytes) -> None:
    """Put back exactly the snapshot's attributes: values, VRs, and absence.

    Also restores (0002,0010), except that a big endian original comes back as Explicit VR
    Little Endian: its binary values were converted when the placeholder was written. Call
    :func:`write_frames` afterwards: it turns a compressed transfer syntax into a native one.
    ``PayloadFormatError`` for a snapshot that lists or holds an attribute outside the fixed
    list, or names something other than a transfer syntax: it was not written by us.
    """
    header, encoded = _parse(blob)
    tags, groups = _listed_selection(header)
    try:
        snap = read_dataset(io.BytesIO(encoded), is_implicit_VR=False, is_little_endian=True)
        restored = [snap[tag] for tag in snap.keys() if tag != _SPECIFIC_CHARACTER_SET]
    except Exception as exc:  # pydicom raises several types on corrupt data
        raise PayloadFormatError(f"attribute snapshot is not readable DICOM: {exc}") from exc
    foreign = [elem.tag for elem in restored if int(elem.tag) not in tags and elem.tag.group not in groups]
    if foreign:
        raise PayloadFormatError(
            f"attribute snapshot holds {_tag_list(foreign)}, which the placeholder never changes: "
            "not a snapshot dicomcrypt wrote"
        )
    original = _original_transfer_syntax(header)

    for elem in list(_selected_elements(ds, tags, groups)):
        del ds[elem.tag]
    for elem in restored:
        ds.add(elem)

    if original is None:
        return  # the original had no file meta; keep what the encrypted copy has
    if original == ExplicitVRBigEndian:
        original = ExplicitVRLittleEndian
    set_transfer_syntax(ds, original)


def _listed_selection(header: dict[str, Any]) -> tuple[set[int], set[int]]:
    """The header's tags and groups, refused unless they are part of the fixed list."""
    try:
        tags = {int(t, 16) for t in header["tags"]}
        groups = {int(g, 16) for g in header["groups"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadFormatError("attribute snapshot header: tags and groups must be lists of hex numbers") from exc
    outside = sorted(tags - set(SNAPSHOT_TAGS)) + sorted(g << 16 for g in groups - set(OVERLAY_GROUPS))
    if outside:
        raise PayloadFormatError(
            f"attribute snapshot lists {_tag_list(outside)}, which the placeholder never changes: "
            "not a snapshot dicomcrypt wrote"
        )
    return tags, groups


def _original_transfer_syntax(header: dict[str, Any]) -> str | None:
    """The transfer syntax the header names; ``PayloadFormatError`` if it is not one."""
    value = header.get("transfer_syntax")
    if value is None:
        return None
    if not isinstance(value, str) or not UID(value).is_transfer_syntax:
        raise PayloadFormatError("attribute snapshot names a transfer syntax that does not exist")
    return value


def _tag_list(tags: Iterable[int]) -> str:
    shown = [f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in tags]
    return ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")


def _selected_elements(
    ds: Dataset, tags: Iterable[int], groups: Collection[int]
) -> Iterator[DataElement]:
    """Top-level elements of ``ds`` in the selection, in tag order."""
    wanted = set(tags)
    group_set = set(groups)
    # Filter, then sort as plain ints: BaseTag's Python-level comparisons made sorting every tag
    # of the data set a visible share of each pipeline call (issue 14).
    for tag in sorted((t for t in ds._dict if t in wanted or (t >> 16) in group_set), key=int):
        yield ds[tag]


def _parse(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a snapshot blob; ``PayloadFormatError`` if it is not one."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise PayloadFormatError("attribute snapshot: bad magic")
    (size,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    if start + size > len(blob):
        raise PayloadFormatError("attribute snapshot: truncated header")
    try:
        header = json.loads(blob[start : start + size].decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadFormatError("attribute snapshot: header is not JSON") from exc
    if not isinstance(header, dict) or header.get("version") != _VERSION:
        raise PayloadFormatError(
            f"attribute snapshot version {header.get('version') if isinstance(header, dict) else '?'}"
            " is not supported"
        )
    _check_header(header)
    return header, blob[start + size :]


_HEX = {"tags": re.compile(r"[0-9A-Fa-f]{8}"), "groups": re.compile(r"[0-9A-Fa-f]{4}")}


def _check_header(header: dict[str, Any]) -> None:
    """The snapshot is sealed, not trusted (anyone may seal for a public recipient): its tag and
    group lists must have their form before they are used (the transfer syntax is checked where
    it is read, :func:`_original_transfer_syntax`)."""
    for name, form in _HEX.items():
        value = header.get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) and form.fullmatch(v) for v in value):
            raise PayloadFormatError(f"attribute snapshot: {name} must be a list of hex strings")
