"""``dicomcrypt serve``: run the receiving node until SIGTERM or Ctrl-C.

Parses options (command line over ``--config [serve]`` over built-in defaults), builds a
:class:`~dicomcrypt.net.scp.ReceiverConfig`, runs the :class:`~dicomcrypt.net.scp.Receiver`
and waits for a signal. Logging goes to stderr, one ``key=value`` line per event.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from dicomcrypt.cli._common import EXIT_OK, error

DEFAULT_PORT = 11112
DEFAULT_AET = "RECEIVER"

SETTINGS: dict[str, type] = {
    "host": str,
    "port": int,
    "aet": str,
    "key": list,
    "out": str,
    "store": str,
    "forward": str,
    "allow_aet": list,
    "tls_cert": str,
    "tls_key": str,
    "tls_ca": str,
    "forward_tls_ca": str,
    "forward_tls_cert": str,
    "forward_tls_key": str,
    "quarantine": str,
    "duplicates": str,
    "accept_plain": bool,
    "max_associations": int,
    "stop_timeout": float,
    "log_level": str,
}
"""What a ``[serve]`` table in the ``--config`` file may set (long option names)."""

_DEFAULTS: dict[str, Any] = {
    "host": "0.0.0.0",
    "port": DEFAULT_PORT,
    "aet": DEFAULT_AET,
    "key": [],
    "store": "restored",
    "allow_aet": [],
    "duplicates": "keep-first",
    "accept_plain": False,
    "max_associations": 10,
    "stop_timeout": 60.0,
    "log_level": "info",
}

_DESCRIPTION = """\
Receive DICOM instances (C-STORE) and file them by study:
  OUT/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm

  dicomcrypt serve --port 11112 --aet RECEIVER --key site.key --out /data/incoming
  dicomcrypt serve --port 11112 --aet VAULT --store encrypted --out /data/vault
  dicomcrypt serve --port 11112 --aet GATEWAY --key site.key --forward PACS@10.0.0.5:104

Each encrypted instance is verified and restored before it is answered; success means it is
on disk (written to a temporary file, fsynced, renamed) or acknowledged by the --forward peer.
Tampered, wrong-key, unknown-key and undecodable instances get a failure status with an error
comment and are kept under the quarantine folder with a JSON note, never among good data.
Plain images are refused (0xC005) unless --accept-plain; non-image objects (SR, ...) pass
through. --store encrypted keeps instances byte for byte as received; a key, if given, is used
only to authenticate them. A SOP Instance UID received again with the same content is answered
success without a rewrite; with other content, --duplicates keep-first (default) refuses it
(0xC006) and quarantines it, replace files it and quarantines the old copy.

SIGTERM or Ctrl-C: stop accepting, finish the instances in flight, exit 0.
Status codes, transfer syntaxes and TLS profiles: docs/conformance.md.
"""


def add_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "serve",
        help="receive, verify and restore DICOM instances (Storage SCP)",
        description=_DESCRIPTION,
        epilog="exit codes:\n  0    stopped by SIGTERM/Ctrl-C after finishing instances in flight\n"
        "  2    usage error\n  3    could not start (bad key, TLS file, config, port in use)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default=None, help="address to listen on (default: 0.0.0.0, all)")
    p.add_argument("--port", type=int, default=None, help=f"TCP port (default: {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--aet", default=None, metavar="AET", help=f"our AE title (default: {DEFAULT_AET})")
    p.add_argument("--key", "-k", action="append", default=None, metavar="PATH",
                   help="key file or folder of *.key files; repeat for several (needed to restore)")
    p.add_argument("--out", default=None, metavar="DIR", help="where instances are filed")
    p.add_argument("--store", choices=("restored", "encrypted"), default=None,
                   help="file restored instances (default) or keep them encrypted, as received")
    p.add_argument("--forward", default=None, metavar="AET@HOST:PORT",
                   help="gateway: send each restored instance to this peer before answering")
    p.add_argument("--allow-aet", action="append", default=None, metavar="AET",
                   help="accept associations only from this calling AE title; repeat (default: any)")
    p.add_argument("--quarantine", default=None, metavar="DIR",
                   help="where refused instances go (default: OUT/quarantine, or ./quarantine)")
    p.add_argument("--duplicates", choices=("keep-first", "replace"), default=None,
                   help="a SOP Instance UID filed again with other content (default: keep-first)")
    p.add_argument("--accept-plain", action="store_true", default=None,
                   help="file plain (unencrypted) images as received instead of refusing them")
    p.add_argument("--max-associations", type=int, default=None, metavar="N",
                   help="associations served at once (default: 10)")
    p.add_argument("--stop-timeout", type=float, default=None, metavar="SECONDS",
                   help="on SIGTERM, how long to wait for instances in flight (default: 60)")
    p.add_argument("--log-level", choices=("debug", "info", "warning"), default=None,
                   help="info: a line per instance (default); warning: refusals only")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="TOML file whose [serve] table sets defaults for these options")
    tls = p.add_argument_group("TLS (server side; with --tls-ca, clients need a certificate it signed)")
    tls.add_argument("--tls-cert", default=None, metavar="FILE", help="our server certificate (PEM)")
    tls.add_argument("--tls-key", default=None, metavar="FILE", help="its private key (PEM)")
    tls.add_argument("--tls-ca", default=None, metavar="FILE", help="CA for client certificates: mutual TLS")
    fwd = p.add_argument_group("TLS to the --forward peer")
    fwd.add_argument("--forward-tls-ca", default=None, metavar="FILE", help="CA that signed the peer's certificate")
    fwd.add_argument("--forward-tls-cert", default=None, metavar="FILE", help="our client certificate")
    fwd.add_argument("--forward-tls-key", default=None, metavar="FILE", help="its private key")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.errors import DicomCryptError

    try:
        config = _receiver_config(args)
        from dicomcrypt.net.scp import Receiver

        receiver = Receiver(config)
    except DicomCryptError as exc:
        return error(str(exc))
    restore_logging = _setup_logging(args.log_level)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            receiver.start()
        except OSError as exc:
            return error(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}")
        while not stop.wait(timeout=1.0):
            pass
        logging.getLogger("dicomcrypt.serve").info("signal received: finishing instances in flight")
        receiver.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        restore_logging()
    return EXIT_OK


def _receiver_config(args: argparse.Namespace) -> Any:
    """Options -> ReceiverConfig. Raises DicomCryptError subclasses with a clear message."""
    from dicomcrypt.config import merge_config
    from dicomcrypt.crypto import KeyRing
    from dicomcrypt.net.address import parse_peer
    from dicomcrypt.net.scp import ReceiverConfig
    from dicomcrypt.errors import TLSConfigError
    from dicomcrypt.net.tls import client_context, server_context

    merge_config(args, "serve", SETTINGS)
    for name, value in _DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise TLSConfigError("--tls-cert and --tls-key go together")
    if args.tls_ca is not None and args.tls_cert is None:
        raise TLSConfigError("--tls-ca (mutual TLS) needs --tls-cert and --tls-key")
    server_tls = server_context(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    forward_tls = None
    if args.forward_tls_ca or args.forward_tls_cert:
        forward_tls = client_context(args.forward_tls_ca, args.forward_tls_cert, args.forward_tls_key,
                                     check_hostname=False)
    return ReceiverConfig(
        ae_title=args.aet,
        host=args.host,
        port=args.port,
        keys=KeyRing.load(args.key) if args.key else None,
        out=Path(args.out) if args.out else None,
        store=args.store,
        forward=parse_peer(args.forward) if args.forward else None,
        allowed_aets=frozenset(a.strip() for a in args.allow_aet),
        ssl_context=server_tls,
        quarantine=Path(args.quarantine) if args.quarantine else None,
        duplicates=args.duplicates,
        forward_ssl_context=forward_tls,
        accept_plain=args.accept_plain,
        max_associations=args.max_associations,
        stop_timeout=args.stop_timeout,
    ).checked()


def _setup_logging(level: str) -> Callable[[], None]:
    """``time level message`` lines (UTC) on stderr; pynetdicom's own chatter only from warnings
    up. Returns a function that puts the previous settings back (``main`` may run in-process)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    ours, theirs = logging.getLogger("dicomcrypt"), logging.getLogger("pynetdicom")
    saved = (ours.handlers[:], ours.level, ours.propagate, theirs.level)
    ours.handlers[:] = [handler]
    ours.setLevel(level.upper())
    ours.propagate = False
    theirs.setLevel(logging.WARNING)

    def restore() -> None:
        ours.handlers[:], ours.level, ours.propagate = saved[0], saved[1], saved[2]
        theirs.setLevel(saved[3])

    return restore
