"""Options ``send`` and ``echo`` share: our AE title, client TLS, timeouts, a config file.

Every option a config file may set has ``default=None`` here and gets its built-in default in
:func:`apply_defaults`, after :func:`dicomcrypt.config.merge_config` (see config.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_AET = "DICOMCRYPT"

CLIENT_SETTINGS: dict[str, type] = {
    "aet": str,
    "tls": bool,
    "tls_ca": str,
    "tls_cert": str,
    "tls_key": str,
    "tls_check_hostname": bool,
    "timeout": float,
}
"""What a ``[send]``/``[echo]`` table may set for these shared options."""

_DEFAULTS: dict[str, Any] = {"aet": DEFAULT_AET, "tls": False, "tls_check_hostname": True}

TLS_NOTES = """\
TLS: any of --tls, --tls-ca, --tls-cert turns it on. The receiver's certificate is always
verified (against --tls-ca, else the system's trusted CAs), and its name checked against the
host unless --no-tls-check-hostname. --tls-cert/--tls-key present a client certificate
(mutual TLS). TLS 1.2 or later, forward-secret AEAD ciphers only (docs/conformance.md).
"""


def add_client_arguments(parser: argparse.ArgumentParser, *, table: str) -> None:
    parser.add_argument("peer", metavar="PEER", help="the receiver, AET@host:port (e.g. RECEIVER@127.0.0.1:11112)")
    parser.add_argument("--aet", default=None, metavar="AET", help=f"our (calling) AE title (default: {DEFAULT_AET})")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help=f"TOML file whose [{table}] table sets defaults for these options")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="how long to wait for each answer from the peer")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", default=None, help="use TLS, trusting the system's CAs")
    tls.add_argument("--tls-ca", default=None, metavar="FILE", help="CA certificate(s) that signed the receiver's")
    tls.add_argument("--tls-cert", default=None, metavar="FILE", help="our client certificate (mutual TLS)")
    tls.add_argument("--tls-key", default=None, metavar="FILE", help="the private key of --tls-cert")
    tls.add_argument("--tls-check-hostname", action=argparse.BooleanOptionalAction, default=None,
                     help="check the receiver's certificate names its host (default: yes)")


def apply_defaults(args: argparse.Namespace, table: str, settings: dict[str, type], defaults: dict[str, Any]) -> None:
    """Fill options from ``--config`` then built-in defaults. Raises ConfigError."""
    from dicomcrypt.config import merge_config

    merge_config(args, table, {**CLIENT_SETTINGS, **settings})
    for name, value in {**_DEFAULTS, **defaults}.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def ssl_context(args: argparse.Namespace) -> Any:
    """The client ``SSLContext`` the options ask for, or None for plain TCP. Raises TLSConfigError."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return None
    from dicomcrypt.errors import TLSConfigError
    from dicomcrypt.net.tls import client_context

    if args.tls_key and not args.tls_cert:
        raise TLSConfigError("--tls-key needs --tls-cert (the client certificate it belongs to)")
    return client_context(args.tls_ca, args.tls_cert, args.tls_key, check_hostname=args.tls_check_hostname)
