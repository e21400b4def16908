"""The Encrypted Attributes Sequence (0400,0500) and what surrounds it (PS3.3 C.12.1.1.4.1,
PS3.15 E.1.1 and E.1.2), without the cryptography.

An item of the Encrypted Attributes Sequence holds Encrypted Content Transfer Syntax UID
(0400,0510) and Encrypted Content (0400,0520). The Encrypted Content is a CMS object whose
plaintext is an Encrypted Attributes Data Set: one element, Modified Attributes Sequence
(0400,0550), with a single item holding the original values of every attribute that
de-identification removed or replaced, encoded in that transfer syntax. We write Explicit VR
Little Endian, as GDCM does (and GDCM reads only that).

Re-identification (E.1.2) copies the item's elements back into the main dataset. Patient
Identity Removed (0012,0062), De-identification Method (0012,0063) and its Code Sequence
(0012,0064) are removed unless the item holds their original values: the instance returns
to exactly its original state (GDCM does the same), where the standard's text would add
Patient Identity Removed = NO.

pydicom only; the CMS is built and opened by :mod:`dicomcrypt.crypto.cms`.
"""

from __future__ import annotations

import hashlib
import io
import struct

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomcrypt.dicom.dataset_copy import independent_element_copy
from dicomcrypt.errors import IdentityFormatError

__all__ = [
    "DEIDENTIFICATION_METHOD",
    "decode_modified_attributes",
    "encode_modified_attributes",
    "encrypted_contents",
    "encrypted_attributes_digest",
    "has_encrypted_attributes",
    "mark_identity_removed",
    "reidentify",
    "set_encrypted_attributes",
]

ENCRYPTED_ATTRIBUTES_SEQUENCE = 0x04000500
MODIFIED_ATTRIBUTES_SEQUENCE = 0x04000550
_IDENTITY_FLAGS = (0x00120062, 0x00120063, 0x00120064)

DEIDENTIFICATION_METHOD = "Basic Application Confidentiality Profile; dicomcrypt"
"""De-identification Method (0012,0063), LO."""

_READABLE_SYNTAXES: dict[str, tuple[bool, bool]] = {  # transfer syntax -> (implicit VR, little endian)
    ExplicitVRLittleEndian: (False, True),
    ImplicitVRLittleEndian: (True, True),
}


def _charset(ds: Dataset) -> str | list[str]:
    """The Python codecs of ``ds``'s Specific Character Set (what pydicom's reader and writer take)."""
    value = ds.get("SpecificCharacterSet")
    if not value:
        return default_encoding
    return convert_encodings(list(value) if not isinstance(value, str) else [value])


def encode_modified_attributes(originals: Dataset, main: Dataset) -> bytes:
    """The Encrypted Attributes Data Set for ``originals``, Explicit VR Little Endian.

    Text is encoded in the character set of ``main`` (the item inherits it when decoded).
    """
    wrapper = Dataset()
    wrapper.ModifiedAttributesSequence = Sequence([originals])
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, wrapper, parent_encoding=_charset(main))
    return fp.getvalue()


def decode_modified_attributes(data: bytes, transfer_syntax: str, main: Dataset) -> Dataset:
    """The single item of the Modified Attributes Sequence in decrypted ``data``.

    Raises :class:`IdentityFormatError` when the plaintext is not one: with CBC and no
    authentication, this is also how a wrong key or altered content shows.
    """
    implicit, little = _READABLE_SYNTAXES[transfer_syntax]
    expected = struct.pack("<HH", 0x0400, 0x0550)
    if not data.startswith(expected):
        raise IdentityFormatError(
            "Encrypted Attributes Sequence (0400,0520): the decrypted content does not start with a "
            "Modified Attributes Sequence (0400,0550): wrong identity key, or the content was altered"
        )
    try:
        wrapper = read_dataset(io.BytesIO(data), implicit, little, parent_encoding=_charset(main))
        sequence = wrapper[MODIFIED_ATTRIBUTES_SEQUENCE].value
        items = list(sequence)
        for item in items:  # convert every element now, so damage shows here and not later
            for tag in list(item._dict):  # noqa: SLF001
                item[tag]
    except Exception as exc:  # pydicom raises many types on damaged data
        raise IdentityFormatError(
            f"Encrypted Attributes Sequence (0400,0520): the decrypted content is not a readable "
            f"Modified Attributes Sequence ({type(exc).__name__}): wrong identity key, or altered content"
        ) from exc
    if len(items) != 1:
        raise IdentityFormatError(
            f"Modified Attributes Sequence (0400,0550) has {len(items)} items; PS3.3 requires exactly one"
        )
    return items[0]


def set_encrypted_attributes(ds: Dataset, contents: list[bytes]) -> None:
    """Add one Encrypted Attributes Sequence item per CMS object in ``contents``."""
    items = []
    for content in contents:
        item = Dataset()
        item.EncryptedContentTransferSyntaxUID = ExplicitVRLittleEndian
        # OB values have even length; pad now, so the digest covers exactly what is stored.
        item.EncryptedContent = content + b"\0" * (len(content) % 2)
        items.append(item)
    ds.EncryptedAttributesSequence = Sequence(items)


def has_encrypted_attributes(ds: Dataset) -> bool:
    """True when ``ds`` carries an Encrypted Attributes Sequence with at least one item."""
    return bool(ds.get("EncryptedAttributesSequence"))


def encrypted_contents(ds: Dataset) -> list[tuple[str, bytes]]:
    """(transfer syntax UID, CMS bytes) of every item we can decode after decryption.

    Raises :class:`IdentityFormatError` if an item lacks its content, or if no item uses a
    transfer syntax we read (Explicit or Implicit VR Little Endian).
    """
    found, unreadable = [], []
    for index, item in enumerate(ds.get("EncryptedAttributesSequence") or (), start=1):
        syntax = str(item.get("EncryptedContentTransferSyntaxUID", ""))
        content = item.get("EncryptedContent")
        if not syntax or not content:
            raise IdentityFormatError(
                f"Encrypted Attributes Sequence (0400,0500) item {index}: Encrypted Content Transfer "
                "Syntax UID (0400,0510) or Encrypted Content (0400,0520) is missing or empty"
            )
        if syntax in _READABLE_SYNTAXES:
            found.append((syntax, bytes(content)))
        else:
            unreadable.append(syntax)
    if not found and unreadable:
        raise IdentityFormatError(
            f"Encrypted Attributes Sequence (0400,0500): content transfer syntax {', '.join(unreadable)} "
            "is not supported (expected Explicit or Implicit VR Little Endian)"
        )
    return found


def encrypted_attributes_digest(ds: Dataset) -> str | None:
    """SHA-256 over every item's transfer syntax and content; ``None`` without the sequence.

    Sealed inside the pixel envelope (which is authenticated) so that a CMS object, which
    PS3.15 leaves unauthenticated, cannot be altered or swapped unnoticed.
    """
    items = ds.get("EncryptedAttributesSequence")
    if not items:
        return None
    digest = hashlib.sha256(b"dicomcrypt/v1/encrypted-attributes\0")
    for item in items:
        syntax = str(item.get("EncryptedContentTransferSyntaxUID", "")).rstrip("\0 ").encode()
        for value in (syntax, bytes(item.get("EncryptedContent") or b"")):
            digest.update(struct.pack("<Q", len(value)) + value)
    return digest.hexdigest()


def mark_identity_removed(ds: Dataset, originals: Dataset) -> None:
    """Patient Identity Removed = YES and De-identification Method (PS3.15 E.1.1 step 6).

    Flags the original already had are copied into ``originals`` first, so re-identification
    restores them. The step allows the method as text or as a code; text only, because
    GDCM's re-identification removes (0012,0062) and (0012,0063) but would leave a code
    sequence behind.
    """
    for tag in _IDENTITY_FLAGS:
        if tag in ds._dict and tag not in originals._dict:  # noqa: SLF001
            originals.add(independent_element_copy(ds[tag]))
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    if 0x00120064 in ds._dict:  # noqa: SLF001
        del ds[0x00120064]


def reidentify(ds: Dataset, originals: Dataset) -> None:
    """Put the original attributes back (PS3.15 E.1.2) and remove the protection's traces."""
    for tag in _IDENTITY_FLAGS:
        if tag in ds._dict and tag not in originals._dict:  # noqa: SLF001
            del ds[tag]
    for tag in sorted(originals._dict):  # noqa: SLF001
        ds[tag] = originals[tag]
    if ENCRYPTED_ATTRIBUTES_SEQUENCE in ds._dict and ENCRYPTED_ATTRIBUTES_SEQUENCE not in originals._dict:  # noqa: SLF001
        del ds[ENCRYPTED_ATTRIBUTES_SEQUENCE]
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
