"""Options ``send`` and ``echo`` share: our AE title, client TLS, timeouts; the peer argument.

Declared once as :class:`~dicomcrypt.config.Option` s, which each command lists with its own.
"""

from __future__ import annotations

import argparse
from typing import Any

from dicomcrypt.config import Option


def client_options(*, timeout: float) -> list[Option]:
    """The options ``send`` and ``echo`` share; ``timeout`` is the command's default ``--timeout``
    (the two wait for different things). Their tables in ``--config`` may set each of them."""
    return [
        Option("--aet", metavar="AET", default="DICOMCRYPT", help="our (calling) AE title (default: DICOMCRYPT)"),
        Option("--timeout", type=float, metavar="SECONDS", default=timeout,
               help="how long to wait for each answer from the peer"),
        Option("--tls", type=bool, default=False, group="TLS", help="use TLS, trusting the system's CAs"),
        Option("--tls-ca", metavar="FILE", group="TLS", help="CA certificate(s) that signed the receiver's"),
        Option("--tls-cert", metavar="FILE", group="TLS", help="our client certificate (mutual TLS)"),
        Option("--tls-key", metavar="FILE", group="TLS", help="the private key of --tls-cert"),
        Option("--tls-check-hostname", type=bool, negatable=True, default=True, group="TLS",
               help="check the receiver's certificate names its host (default: yes)"),
    ]


TLS_NOTES = """\
TLS: any of --tls, --tls-ca, --tls-cert turns it on. The receiver's certificate is always
verified (against --tls-ca, else the system's trusted CAs), and its name checked against the
host unless --no-tls-check-hostname. --tls-cert/--tls-key present a client certificate
(mutual TLS). TLS 1.2 or later, forward-secret AEAD ciphers only (docs/conformance.md).
"""


def add_peer_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("peer", metavar="PEER", help="the receiver, AET@host:port (e.g. RECEIVER@127.0.0.1:11112)")


def ssl_context(args: argparse.Namespace) -> Any:
    """The client ``SSLContext`` the options ask for, or None for plain TCP. Raises TLSConfigError."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return None
    from dicomcrypt.errors import TLSConfigError
    from dicomcrypt.net.tls import client_context

    if args.tls_key and not args.tls_cert:
        raise TLSConfigError("--tls-key needs --tls-cert (the client certificate it belongs to)")
    return client_context(args.tls_ca, args.tls_cert, args.tls_key, check_hostname=args.tls_check_hostname)
