"""``dicomcrypt echo``: check that a peer answers (C-ECHO), over TLS if asked.

Prints the status and the round-trip time. Useful before a first ``send``: it proves the
address, the AE titles, the firewall and the certificates without sending any data.
"""

from __future__ import annotations

import argparse
import time

from dicomcrypt.cli import _scu_options
from dicomcrypt.cli._common import EXIT_OK, EXIT_SOME_FAILED, error
from dicomcrypt.config import Option, add_arguments, resolve

OPTIONS: list[Option] = _scu_options.client_options(timeout=30.0)
"""Every option of ``echo``; an ``[echo]`` table of ``--config`` may set each of them."""

_EPILOG = (
    "exit codes:\n"
    f"  {EXIT_OK}    the peer answered C-ECHO with Success\n"
    f"  {EXIT_SOME_FAILED}    the peer answered with another status\n"
    "  2    usage error (bad command line)\n"
    "  3    no association: unreachable, rejected, TLS failure, bad TLS or config file\n"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "echo",
        help="check that a peer answers (C-ECHO)",
        description=__doc__ + "\n" + _scu_options.TLS_NOTES,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _scu_options.add_peer_argument(parser)
    add_arguments(parser, OPTIONS, table="echo")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.net.address import parse_peer
    from dicomcrypt.net.scu import echo

    try:
        resolve(args, OPTIONS, table="echo")
        peer = parse_peer(args.peer)
        ssl_context = _scu_options.ssl_context(args)
        started = time.perf_counter()
        status = echo(peer, calling_aet=args.aet, ssl_context=ssl_context, timeout=args.timeout)
    except DicomCryptError as exc:
        return error(str(exc))
    elapsed_ms = (time.perf_counter() - started) * 1000
    tls = " over TLS" if ssl_context is not None else ""
    if status == 0x0000:
        print(f"{peer} answered C-ECHO{tls}: 0x0000 Success ({elapsed_ms:.0f} ms)")
        return EXIT_OK
    print(f"{peer} answered C-ECHO{tls} with status 0x{status:04X} ({elapsed_ms:.0f} ms)")
    return EXIT_SOME_FAILED
