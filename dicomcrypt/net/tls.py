"""TLS contexts for DICOM associations (PS3.15 Annex B.9/B.10 style: TLS 1.2 or later).

pynetdicom leaves the ``ssl.SSLContext`` to its caller (``start_server(ssl_context=...)``,
``associate(tls_args=(ctx, hostname))``); these two builders are the only place that decides
protocol versions, ciphers and certificate checks, so the conformance statement can point here.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from dicomcrypt.errors import TLSConfigError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
"""Older versions are refused in both directions (BCP 195; PS3.15 BCP 195 profiles)."""

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""Forward-secret AEAD suites only for TLS 1.2; TLS 1.3 suites are all AEAD and stay default."""


def _check_files(**paths: str | Path | None) -> None:
    for what, path in paths.items():
        if path is not None and not Path(path).is_file():
            raise TLSConfigError(f"TLS {what.replace('_', ' ')} file {str(path)!r} does not exist")


def _base_context(purpose: ssl.Purpose) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.set_ciphers(TLS12_CIPHERS)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: str | Path, key: str | Path | None) -> None:
    try:
        ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(f"cannot load TLS certificate {str(cert)!r} with its key: {exc}") from None


def _load_ca(ctx: ssl.SSLContext, ca: str | Path) -> None:
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(f"cannot load TLS CA file {str(ca)!r}: {exc}") from None


def server_context(cert: str | Path, key: str | Path, ca: str | Path | None = None) -> ssl.SSLContext:
    """Context for the SCP. With ``ca``, clients must present a certificate it signed (mutual TLS)."""
    _check_files(certificate=cert, private_key=key, ca=ca)
    ctx = _base_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(ctx, cert, key)
    if ca is not None:
        _load_ca(ctx, ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(
    ca: str | Path | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """Context for the SCU. The server's certificate is always verified: against ``ca`` when
    given, else the system store. ``cert``/``key`` present a client certificate (mutual TLS).
    ``check_hostname=False`` keeps chain verification but skips the name check, for DICOM peers
    addressed by IP whose certificates name only the AE.
    """
    _check_files(ca=ca, certificate=cert, private_key=key)
    if (cert is None) != (key is None) and key is not None:
        raise TLSConfigError("a TLS client key was given without its certificate")
    ctx = _base_context(ssl.Purpose.SERVER_AUTH)
    if ca is not None:
        _load_ca(ctx, ca)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert is not None:
        _load_chain(ctx, cert, key)
    return ctx
