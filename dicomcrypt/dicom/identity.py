"""The instance identity the envelope is bound to."""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicomcrypt.errors import InvalidInputError, NotDicomError

__all__ = ["uids"]

_NAMES = ("SOP Class UID", "SOP Instance UID", "Study Instance UID", "Series Instance UID")


def uids(ds: Dataset) -> tuple[str, str, str, str]:
    """(SOP Class, SOP Instance, Study Instance, Series Instance) UIDs of ``ds``.

    SOP Class/Instance fall back on the file meta; a missing one raises ``InvalidInputError``
    naming it, because the SOP Instance UID is what stops an envelope being moved to another
    object. Study and Series UIDs are bound when present and as empty strings when not: some
    real secondary captures lack them, and refusing those would protect nothing.
    """
    meta = getattr(ds, "file_meta", None) or Dataset()
    found = (
        ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID"),
        ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID"),
    )
    missing = [name for name, value in zip(_NAMES, found) if not value]
    if missing:
        raise InvalidInputError(f"instance has no {', '.join(missing)}")
    study = ds.get("StudyInstanceUID") or ""
    series = ds.get("SeriesInstanceUID") or ""
    values = (str(found[0]), str(found[1]), str(study), str(series))
    for name, value in zip(_NAMES, values):
        if not value.isascii():
            raise NotDicomError(f"damaged instance: its {name} is not ASCII text")
    return values
