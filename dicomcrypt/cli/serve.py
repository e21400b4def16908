"""``dicomcrypt serve``: run the receiving node until SIGTERM or Ctrl-C.

Parses options (command line over ``--config [serve]`` over ``ReceiverConfig``'s defaults),
builds a :class:`~dicomcrypt.net.scp.ReceiverConfig`, runs the
:class:`~dicomcrypt.net.scp.Receiver` and waits for a signal. Logging goes to stderr, one ``key=value`` line per event.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dicomcrypt.cli._common import EXIT_OK, error, peer_address, whole_number
from dicomcrypt.cli.encrypt import uid_root_argument
from dicomcrypt.dicom.output_syntax import OUTPUT_SYNTAX_CHOICES
from dicomcrypt.config import Option, add_arguments, resolve
from dicomcrypt.logsafe import SafeFormatter

_SERVER_TLS = "TLS (server side; with --tls-ca, clients need a certificate it signed)"
_FORWARD_TLS = "TLS to the --forward peer"

OPTIONS: list[Option] = [
    Option("--host", help="address to listen on (default: 0.0.0.0, all)"),
    Option("--port", type=int, parse=whole_number(0, 65535), help="TCP port (default: 11112; 0: any free port)"),
    Option("--aet", metavar="AET", help="our AE title (default: RECEIVER)"),
    Option("--key", "-k", repeatable=True, metavar="PATH",
           help="key file or folder of *.key files; repeat for several (needed to restore)"),
    Option("--out", parse=Path, metavar="DIR", help="where instances are filed"),
    Option("--store", choices=("restored", "encrypted"),
           help="file restored instances (default) or keep them encrypted, as received"),
    Option("--forward", parse=peer_address, metavar="AET@HOST:PORT",
           help="gateway: send each restored instance to this peer before answering"),
    Option("--allow-aet", repeatable=True, metavar="AET",
           help="accept associations only from this calling AE title; repeat (default: any)"),
    Option("--quarantine", parse=Path, metavar="DIR",
           help="where refused instances go (default: OUT/quarantine, or ./quarantine)"),
    Option("--duplicates", choices=("keep-first", "replace"),
           help="a SOP Instance UID filed again with other content (default: keep-first)"),
    Option("--accept-plain", type=bool,
           help="file plain (unencrypted) images as received instead of refusing them"),
    Option("--max-associations", type=int, parse=whole_number(1), metavar="N",
           help="associations served at once (default: 10)"),
    Option("--max-image-mb", type=int, parse=whole_number(1), metavar="MB",
           help="refuse (0xC003) a payload that declares more restored pixel data than this (default: 1024)"),
    Option("--max-model-megapixels", type=int, parse=whole_number(1), metavar="N",
           help="refuse (0xC003) a payload whose model decoding exceeds N million pixels (default: 40)"),
    Option("--output-syntax", choices=OUTPUT_SYNTAX_CHOICES,
           help="transfer syntax of restored instances: the original one when it was lossless, else JPEG-LS "
                "lossless (default: original)"),
    Option("--uid-root", parse=uid_root_argument, metavar="ROOT",
           help="UID root for a lossy restore's derived SOP Instance UID (default: 2.25 UUID form)"),
    Option("--stop-timeout", type=float, metavar="SECONDS",
           help="on SIGTERM, how long to wait for instances in flight (default: 60)"),
    Option("--max-associations-per-peer", type=int, parse=whole_number(1), metavar="N",
           help="connections one peer host may hold at once; more are closed (default: 4)"),
    Option("--tls-handshake-timeout", type=float, metavar="SECONDS",
           help="time a client has to finish the TLS handshake (default: 10)"),
    Option("--pdu-timeout", type=float, metavar="SECONDS",
           help="time for each PDU to arrive whole once started, and for the association "
                "request after connecting (default: 30)"),
    Option("--idle-timeout", type=float, metavar="SECONDS",
           help="abort an established association silent this long (default: 60)"),
    Option("--association-timeout", type=float, metavar="SECONDS",
           help="longest life of one association (default: 3600)"),
    Option("--max-instance-mb", type=int, parse=whole_number(1), metavar="MIB",
           help="largest instance accepted; a bigger one aborts its association (default: 512)"),
    Option("--quarantine-max-mb", type=int, parse=whole_number(1), metavar="MIB",
           help="size cap of the quarantine folder, oldest records deleted first (default: 1024)"),
    Option("--quarantine-days", type=float, metavar="DAYS",
           help="delete quarantine records older than this (default: 30)"),
    Option("--log-level", choices=("debug", "info", "warning"), default="info",
           help="info: a line per instance (default); warning: refusals only"),
    Option("--tls-cert", metavar="FILE", group=_SERVER_TLS, help="our server certificate (PEM)"),
    Option("--tls-key", metavar="FILE", group=_SERVER_TLS, help="its private key (PEM)"),
    Option("--tls-ca", metavar="FILE", group=_SERVER_TLS, help="CA for client certificates: mutual TLS"),
    Option("--forward-tls-ca", metavar="FILE", group=_FORWARD_TLS, help="CA that signed the peer's certificate"),
    Option("--forward-tls-cert", metavar="FILE", group=_FORWARD_TLS, help="our client certificate"),
    Option("--forward-tls-key", metavar="FILE", group=_FORWARD_TLS, help="its private key"),
]
"""Every option of ``serve``; a ``[serve]`` table of ``--config`` may set each of them.

An option named as a :class:`~dicomcrypt.net.scp.ReceiverConfig` field goes to that field as
parsed (:func:`_receiver_config`); such options declare no default: left unset, the field's own
default applies, so the receiver's defaults are written once, in ``ReceiverConfig``, for
``serve`` and in-process users alike. The "(default: ...)" in their help documents it
(tests/cli/test_config_options.py checks that it agrees).
"""

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
Plain images are refused (0xC005) unless --accept-plain (quarantine keeps their header, never
their pixels); non-image objects (SR, ...) pass through. --store encrypted keeps instances
byte for byte as received; a key, if given, is used only to authenticate them.
A SOP Instance UID received again with the same content is answered
success without a rewrite; with other content, --duplicates keep-first (default) refuses it
(0xC006) and quarantines it, replace files it and quarantines the old copy.

SIGTERM or Ctrl-C: stop accepting, finish the instances in flight, exit 0.
Status codes, transfer syntaxes and TLS profiles: docs/conformance.md.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="receive, verify and restore DICOM instances (Storage SCP)",
        description=_DESCRIPTION,
        epilog="exit codes:\n  0    stopped by SIGTERM/Ctrl-C after finishing instances in flight\n"
        "  2    usage error\n  3    could not start (bad key, TLS file, config, port in use)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p, OPTIONS, table="serve")
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
    from dicomcrypt.crypto import KeyRing
    from dicomcrypt.net.scp import ReceiverConfig
    from dicomcrypt.errors import TLSConfigError
    from dicomcrypt.net.tls import client_context, server_context

    resolve(args, OPTIONS, table="serve")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise TLSConfigError("--tls-cert and --tls-key go together")
    if args.tls_ca is not None and args.tls_cert is None:
        raise TLSConfigError("--tls-ca (mutual TLS) needs --tls-cert and --tls-key")
    server_tls = server_context(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    forward_tls = None
    if args.forward_tls_ca or args.forward_tls_cert:
        forward_tls = client_context(args.forward_tls_ca, args.forward_tls_cert, args.forward_tls_key,
                                     check_hostname=False)
    fields = {field.name for field in dataclasses.fields(ReceiverConfig)}
    settings = {option.dest: getattr(args, option.dest) for option in OPTIONS if option.dest in fields}
    settings.update(  # the options whose name or value differs from the field's
        ae_title=args.aet,
        keys=KeyRing.load(args.key) if args.key else None,
        allowed_aets=frozenset(a.strip() for a in args.allow_aet) if args.allow_aet else None,
        ssl_context=server_tls,
        forward_ssl_context=forward_tls,
    )
    # None: neither the command line nor the file set it, so ReceiverConfig's default applies.
    return ReceiverConfig(**{name: value for name, value in settings.items() if value is not None}).checked()


def _setup_logging(level: str) -> Callable[[], None]:
    """``time level message`` lines (UTC) on stderr; pynetdicom's own chatter only from warnings
    up. Returns a function that puts the previous settings back (``main`` may run in-process)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
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
