"""Throw-away PKI for TLS tests: a CA, a server certificate for 127.0.0.1/localhost, and client
certificates signed by that CA or by a second, untrusted CA. Made with ``cryptography`` so tests
need no openssl binary."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool, server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> TLSFiles:
    """Write a CA, a server pair, a trusted client pair and an untrusted client pair to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for ca_name in ("ca", "rogue_ca"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate(f"dicomcrypt test {ca_name}", ca_key, f"dicomcrypt test {ca_name}", ca_key, ca=True)
        files[ca_name] = folder / f"{ca_name}.pem"
        files[ca_name].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        leaves = [("server", True), ("client", False)] if ca_name == "ca" else [("rogue_client", False)]
        for leaf, is_server in leaves:
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            leaf_cert = _certificate(
                "localhost" if is_server else f"{leaf} AE", leaf_key, f"dicomcrypt test {ca_name}", ca_key,
                ca=False, server=is_server,
            )
            files[f"{leaf}_cert"] = folder / f"{leaf}.pem"
            files[f"{leaf}_cert"].write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
            files[f"{leaf}_key"] = folder / f"{leaf}.key"
            _write_key(leaf_key, files[f"{leaf}_key"])
    return TLSFiles(**files)
