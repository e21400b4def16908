"""DICOM's rules for a lossy reconstruction (PS3.3 C.7.6.1.1.5 and C.7.6.1.1.2).

Pixels that went through lossy compression are a different image: a new SOP Instance UID,
Image Type DERIVED, Lossy Image Compression "01" with ratio and method (appended to any earlier
lossy steps), and references to the source with the codes DICOM defines for this case.
"""

from __future__ import annotations

import re

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pydicom.valuerep import format_number_as_ds

__all__ = ["mark_lossy_derived"]

_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")


def _code(value: str, meaning: str) -> Dataset:
    """A DCM-coded item (Code Sequence Macro, PS3.3 Table 8.8-1)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def mark_lossy_derived(
    ds: Dataset,
    *,
    source_sop_class_uid: str,
    source_sop_instance_uid: str,
    ratio: float,
    method: str,
    description: str | None = None,
) -> str:
    """Make ``ds`` a lossy derived instance of the source; returns the new SOP Instance UID.

    ``method`` is a Lossy Image Compression Method (0028,2114) defined term or our own CS value
    (e.g. "DICOMCRYPT_AE"); ``ratio`` is uncompressed / compressed size.
    """
    if not _CS.match(method):
        raise ValueError(f"lossy compression method {method!r} is not a valid CS value")
    if not ratio > 0:
        raise ValueError(f"compression ratio must be positive, got {ratio}")

    new_uid = generate_uid()
    ds.SOPInstanceUID = new_uid
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = new_uid

    if "ImageType" in ds and ds.ImageType:
        values = list(ds.ImageType) if not isinstance(ds.ImageType, str) else [ds.ImageType]
        values[0] = "DERIVED"
        ds.ImageType = values

    was_lossy = str(ds.get("LossyImageCompression", "")).strip() == "01"
    ratios = _values(ds, "LossyImageCompressionRatio") if was_lossy else []
    methods = _values(ds, "LossyImageCompressionMethod") if was_lossy else []
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = _one_or_many([*ratios, format_number_as_ds(float(ratio))])
    ds.LossyImageCompressionMethod = _one_or_many([*methods, method])

    text = description or f"Lossy compression ({method}), ratio {float(ratio):.3g}:1"
    ds.DerivationDescription = text[:1024]  # ST

    source = Dataset()
    source.ReferencedSOPClassUID = source_sop_class_uid
    source.ReferencedSOPInstanceUID = source_sop_instance_uid
    source.PurposeOfReferenceCodeSequence = Sequence([_code("121320", "Uncompressed predecessor")])
    ds.SourceImageSequence = Sequence([source])
    ds.DerivationCodeSequence = Sequence([_code("113040", "Lossy Compression")])
    return new_uid


def _values(ds: Dataset, keyword: str) -> list:
    """Existing values of a multi-valued element as a list (empty when absent)."""
    value = ds.get(keyword, None)
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    return list(value)


def _one_or_many(values: list) -> object:
    """A single value as itself (VM 1), several as a list."""
    return values[0] if len(values) == 1 else values
