"""Protect and restore the identifying attributes of an instance (``--protect-identity``).

PS3.15 Annex E, Basic Application Level Confidentiality Profile, as a de-identifier (E.1.1)
and re-identifier (E.1.2)::

    original ──deidentify──> dummies / pseudonyms / replaced UIDs in the clear
        │                     + Patient Identity Removed = YES, De-identification Method
        └─ originals of what changed ──> Modified Attributes Sequence item
              ──Explicit VR LE──> CMS EnvelopedData (RSA key transport, AES-256-CBC)
              ──> Encrypted Attributes Sequence (0400,0500)

Whoever holds an RSA private key of a recipient certificate restores the originals, with
dicomcrypt or any conforming re-identifier (GDCM's ``gdcmanon -d``).

With pixel encryption the order matters and is fixed by the pipeline: identity first, then
the pixel envelope is sealed, bound to the *replaced* UIDs that stay in the clear. So a
holder of the pixel key alone restores the pixels (the binding matches what it sees) and
gets a de-identified instance; the pixel envelope also seals a digest of the Encrypted
Attributes Sequence, which the standard's CBC leaves unauthenticated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydicom.dataset import Dataset

from dicomcrypt.crypto.cms import (
    CONTENT_CIPHERS,
    IdentityKey,
    load_certificates,
    open_enveloped,
    parse_enveloped,
    seal_enveloped,
)
from dicomcrypt.dicom import encrypted_attributes as ea
from dicomcrypt.dicom.confidentiality import Pseudonyms, deidentify
from dicomcrypt.dicom.encoding import is_big_endian, swap_binary_values
from dicomcrypt.errors import IdentityFormatError, IdentityKeyError, InvalidInputError

__all__ = [
    "IdentityKey",
    "IdentityProtection",
    "IDENTITY_RESTORED_NOTE",
    "NOT_RESTORED_NOTE",
    "describe_identity_protection",
    "original_private_slots_reserved",
    "restore_identity",
]

UID_SECRET_SIZE = 32

IDENTITY_RESTORED_NOTE = "identity restored from the Encrypted Attributes Sequence"
NOT_RESTORED_NOTE = (
    "identity NOT restored: patient name, IDs, dates and UIDs are de-identified dummies "
    "(Patient Identity Removed = YES); give --identity-key to restore them"
)


@dataclass(frozen=True)
class IdentityProtection:
    """Who can restore the identity (RSA certificates), and the secret behind replacement UIDs.

    Use one object for every instance of a study (a batch does): replacement UIDs and
    pseudonyms are consistent within one ``uid_secret``. A new object gets a new random
    secret, so two runs over one study give two different sets of replacement UIDs; pass
    the same secret to keep them consistent across runs.
    """

    certificates: tuple[x509.Certificate, ...]
    uid_secret: bytes = field(default_factory=lambda: os.urandom(UID_SECRET_SIZE), repr=False)
    cipher: str = "aes256"

    def __post_init__(self) -> None:
        if not self.certificates:
            raise ValueError("identity protection needs at least one recipient certificate")
        if self.cipher not in CONTENT_CIPHERS:
            raise ValueError(f"unknown content cipher {self.cipher!r}; choose one of {', '.join(CONTENT_CIPHERS)}")
        object.__setattr__(self, "certificates", tuple(self.certificates))

    @classmethod
    def load(
        cls, paths: Iterable[str | Path], *, uid_secret: bytes | None = None, cipher: str = "aes256"
    ) -> IdentityProtection:
        """From certificate files (PEM or DER); raises ``KeyFileError`` naming a bad file."""
        certificates = tuple(c for p in paths for c in load_certificates(p))
        if uid_secret is None:
            return cls(certificates, cipher=cipher)
        return cls(certificates, uid_secret, cipher)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Pickle as DER certificates, so settings travel to worker processes."""
        der = tuple(c.public_bytes(serialization.Encoding.DER) for c in self.certificates)
        return _rebuild_identity_protection, (der, self.uid_secret, self.cipher)

    def protect(self, ds: Dataset) -> None:
        """De-identify ``ds`` in place and add its encrypted originals (PS3.15 E.1.1)."""
        if ea.has_encrypted_attributes(ds):
            raise InvalidInputError(
                "instance already has an Encrypted Attributes Sequence (0400,0500): its identity is already protected"
            )
        originals = deidentify(ds, Pseudonyms(self.uid_secret))
        if is_big_endian(ds):  # the record is little endian whatever the source
            for elem in originals:
                swap_binary_values(elem)
        ea.mark_identity_removed(ds, originals)
        content = seal_enveloped(ea.encode_modified_attributes(originals, ds), self.certificates, cipher=self.cipher)
        ea.set_encrypted_attributes(ds, [content])


def _rebuild_identity_protection(der: tuple[bytes, ...], uid_secret: bytes, cipher: str) -> IdentityProtection:
    return IdentityProtection(tuple(x509.load_der_x509_certificate(d) for d in der), uid_secret, cipher)


def describe_identity_protection(ds: Dataset) -> str | None:
    """Who can restore the identity of ``ds`` (from the CMS recipients); ``None`` if not protected.

    Needs no key: recipient issuer names and serial numbers are in clear in the CMS object.
    """
    if not ea.has_encrypted_attributes(ds):
        return None
    try:
        recipients = [parse_enveloped(content).describe_recipients() for _, content in ea.encrypted_contents(ds)]
    except IdentityFormatError as exc:
        return f"protected, but the Encrypted Attributes Sequence is unreadable: {exc}"
    return "protected (PS3.15 Encrypted Attributes); restorable by " + "; ".join(recipients)


def restore_identity(ds: Dataset, keys: Sequence[IdentityKey]) -> None:
    """Re-identify ``ds`` in place (PS3.15 E.1.2) with the first item a key opens.

    Raises ``IdentityKeyError`` (names the recipients) when no key opens any item,
    ``IdentityFormatError`` when the sequence or its content is malformed. ``ds`` is left
    untouched on error.
    """
    if not keys:
        raise IdentityKeyError("no identity key given to restore the Encrypted Attributes Sequence (0400,0500)")
    failure: Exception | None = None
    for syntax, content in ea.encrypted_contents(ds):
        try:
            plaintext = open_enveloped(content, keys)
        except IdentityKeyError as exc:
            failure = exc
            continue
        ea.reidentify(ds, ea.decode_modified_attributes(plaintext, syntax, ds))
        return
    raise failure or IdentityKeyError("the Encrypted Attributes Sequence (0400,0500) has no item to open")


@contextmanager
def original_private_slots_reserved(out: Dataset, original: Dataset, group: int) -> Iterator[None]:
    """Keep a block created in ``out`` (in ``group``) off the private creator slots that
    ``original`` used there.

    De-identification removed the original's private blocks; a re-identifier puts them back
    at their original tags. Had our block taken one of their slots, re-identification by
    another tool (``gdcmanon -d``) would overwrite our creator and orphan our elements.
    """
    taken = [
        tag for tag in original._dict  # noqa: SLF001
        if tag >> 16 == group and 0x10 <= (tag & 0xFFFF) <= 0xFF and tag not in out._dict  # noqa: SLF001
    ]
    for tag in taken:
        out.add_new(tag, "LO", "RESERVED")
    try:
        yield
    finally:
        for tag in taken:
            del out[tag]
