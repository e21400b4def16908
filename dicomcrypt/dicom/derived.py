"""DICOM's rules for a lossy reconstruction (PS3.3 C.7.6.1.1.5 and C.7.6.1.1.2).

Pixels that went through lossy compression are a different image: a new SOP Instance UID,
Image Type DERIVED, Lossy Image Compression "01" with ratio and method (appended to any earlier
lossy steps), and references to the source with the codes DICOM defines for this case.

The new UID is derived, not random (:func:`derived_instance_uid`): a hash of the source SOP
Instance UID and the payload, in the ``2.25`` (UUID) form or under a site's UID root. The same
encrypted instance therefore always restores to the same UID, so a re-sent or re-restored copy
is a duplicate a PACS recognises, not a second image. This is the one place a UID is minted.
"""

from __future__ import annotations

import hashlib
import re

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID
from pydicom.valuerep import format_number_as_ds

from dicomcrypt.errors import InvalidInputError

__all__ = ["MAX_UID_ROOT_LENGTH", "check_uid_root", "derived_instance_uid", "mark_lossy_derived"]

_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_UID_MAX = 64
#: A root leaves at least 20 digits (over 64 bits of the hash) under DICOM's 64 characters.
MAX_UID_ROOT_LENGTH = _UID_MAX - 1 - 20
_DOMAIN = b"dicomcrypt/v1/derived-uid\0"


def check_uid_root(root: str) -> str:
    """``root`` if it is a UID root a derived UID can go under; else :class:`InvalidInputError`.

    A root is what a site registered (or got as ``2.25.<uuid>``): digit components without
    leading zeros, joined by dots, short enough to leave room for the hash digits.
    """
    if not _UID.match(root):
        raise InvalidInputError(
            f"UID root {root!r}: expected digits and dots, like 1.2.826.0.1.3680043.10.999 "
            "(no leading zeros in a component, no trailing dot)"
        )
    if len(root) > MAX_UID_ROOT_LENGTH:
        raise InvalidInputError(
            f"UID root {root!r} is {len(root)} characters: at most {MAX_UID_ROOT_LENGTH}, so a derived UID "
            f"keeps 20 digits under DICOM's {_UID_MAX}"
        )
    return root


def derived_instance_uid(source_uid: str, payload_sha256: bytes, uid_root: str | None = None) -> str:
    """The SOP Instance UID of the lossy restore of ``source_uid`` whose payload hashes to
    ``payload_sha256``: the same inputs always give the same UID.

    Without ``uid_root``: ``2.25.`` and the decimal value of a name-based UUID (version 8,
    RFC 9562) made from the hash, as PS3.5 B.2 allows. With it: the root, a dot, and as many
    decimal digits of the hash as fit in 64 characters.
    """
    digest = hashlib.sha256(_DOMAIN + source_uid.encode("ascii", "replace") + b"\0" + payload_sha256).digest()
    if uid_root is None:
        value = int.from_bytes(digest[:16], "big")
        value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8
        value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
        return f"2.25.{value}"
    root = check_uid_root(uid_root)
    digits = str(int.from_bytes(digest, "big"))  # 77 or 78 digits, the first never 0
    return f"{root}.{digits[: _UID_MAX - len(root) - 1]}"


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
    new_sop_instance_uid: str,
    description: str | None = None,
) -> str:
    """Make ``ds`` a lossy derived instance of the source, named ``new_sop_instance_uid`` (from
    :func:`derived_instance_uid`); returns it.

    ``method`` is a Lossy Image Compression Method (0028,2114) defined term or our own CS value
    (e.g. "DICOMCRYPT_AE"); ``ratio`` is uncompressed / compressed size.
    """
    if not _CS.match(method):
        raise ValueError(f"lossy compression method {method!r} is not a valid CS value")
    if not ratio > 0:
        raise ValueError(f"compression ratio must be positive, got {ratio}")

    new_uid = UID(new_sop_instance_uid)
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
