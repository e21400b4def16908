"""Throw-away RSA identity keys and self-signed certificates for identity-protection tests
(PS3.15 E.1.1 uses RSA key transport), and a comparison of datasets attribute by attribute."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pydicom
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


@dataclass(frozen=True)
class IdentityPair:
    key: Path  # PEM, PKCS #1 (as gdcmanon --key expects), mode 0600
    cert: Path  # PEM, self-signed
    common_name: str


def make_identity(folder: Path, common_name: str = "identity-restorer", *, bits: int = 2048) -> IdentityPair:
    """An RSA key (PEM, mode 0600) and a self-signed certificate for it, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / f"{common_name}.key.pem", folder / f"{common_name}.cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return IdentityPair(key_path, cert_path, common_name)


def attribute_differences(
    expected: pydicom.Dataset, actual: pydicom.Dataset, *, skip: frozenset[int] = PIXEL_TAGS
) -> list[str]:
    """Top-level attributes whose presence or value differ (names for the assertion message)."""
    tags = (set(expected.keys()) | set(actual.keys())) - skip
    return sorted(
        f"{pydicom.tag.Tag(t)} {pydicom.datadict.keyword_for_tag(t) or 'private'}"
        for t in tags
        if expected.get(t) != actual.get(t)
    )
