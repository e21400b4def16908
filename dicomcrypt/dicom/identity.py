"""The instance identity the envelope is bound to."""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicomcrypt.errors import InvalidInputError

__all__ = ["uids"]

_NAMES = ("SOP Class UID", "SOP Instance UID", "Study Instance UID", "Series Instance UID")


def uids(ds: Dataset) -> tuple[str, str, str, str]:
    """(SOP Class, SOP Instance, Study Instance, Series Instance) UIDs of ``ds``.

    SOP Class/Instance fall back on the file meta. A missing one raises ``InvalidInputError``
    naming it: binding an envelope to an empty identity would let it be moved between objects.
    """
    meta = getattr(ds, "file_meta", None) or Dataset()
    found = (
        ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID"),
        ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID"),
        ds.get("StudyInstanceUID"),
        ds.get("SeriesInstanceUID"),
    )
    missing = [name for name, value in zip(_NAMES, found) if not value]
    if missing:
        raise InvalidInputError(f"instance has no {', '.join(missing)}")
    return (str(found[0]), str(found[1]), str(found[2]), str(found[3]))
