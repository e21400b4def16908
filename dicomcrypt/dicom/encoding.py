"""Transfer syntax bookkeeping: which one a dataset has, and switching it to little endian.

pydicom keeps OB/OW/OL/OF/OD/OV values as the raw bytes it read. Changing (0002,0010) from
Explicit VR Big Endian to a little endian syntax does not swap them (pydicom warns about
this), so a big endian palette LUT or overlay would be corrupt after the switch. Every place
that moves a dataset to little endian goes through :func:`convert_to_little_endian`.
"""

from __future__ import annotations

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

__all__ = [
    "convert_to_little_endian",
    "is_big_endian",
    "set_transfer_syntax",
    "swap_binary_values",
    "transfer_syntax",
]

# Word size of each binary VR whose raw value is stored in the dataset's byte order.
_WORD_SIZE: dict[str, int] = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


def transfer_syntax(ds: Dataset) -> UID | None:
    """The transfer syntax of ``ds``: its file meta, else inferred from how it was read."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return UID(str(meta.TransferSyntaxUID))
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is None:
        return None
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def is_big_endian(ds: Dataset) -> bool:
    """True when the binary values held by ``ds`` are in big endian order."""
    tsyntax = transfer_syntax(ds)
    return tsyntax is not None and not tsyntax.is_little_endian


def set_transfer_syntax(ds: Dataset, tsyntax: UID | str | None) -> None:
    """Set (0002,0010), creating the file meta if needed; ``None`` removes it."""
    meta = getattr(ds, "file_meta", None)
    if tsyntax is None:
        if meta is not None and "TransferSyntaxUID" in meta:
            del meta.TransferSyntaxUID
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = UID(str(tsyntax))


def swap_binary_values(elem: DataElement) -> None:
    """Byte-swap the raw value of an OW/OL/OF/OD/OV element (recursing into sequences)."""
    if elem.VR == "SQ":
        for item in elem.value:
            for child in item:
                swap_binary_values(child)
        return
    size = _WORD_SIZE.get(elem.VR)
    value = elem.value
    if size is None or not isinstance(value, (bytes, bytearray)) or len(value) % size:
        return
    swapped = bytearray(len(value))
    for offset in range(size):
        swapped[offset::size] = value[size - 1 - offset :: size]
    elem.value = bytes(swapped)


def convert_to_little_endian(ds: Dataset) -> None:
    """Swap every binary value of a big endian ``ds`` and mark it Explicit VR Little Endian.

    Pixel elements are skipped: the caller writes them afresh.
    """
    if not is_big_endian(ds):
        return
    for elem in ds:
        if elem.tag not in _PIXEL_TAGS:
            swap_binary_values(elem)
    set_transfer_syntax(ds, ExplicitVRLittleEndian)
    ds.set_original_encoding(False, True, ds.original_character_set)
