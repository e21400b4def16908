"""``dicomcrypt serve``: run the receiving node until SIGTERM or Ctrl-C.

Parses options (command line over ``--config [serve]`` over ``ReceiverConfig``'s defaults),
builds a :class:`~dicomcrypt.net.scp.ReceiverConfig`, checks before listening what would
otherwise fail every instance later (:func:`_check_before_listening`: exit 3 with the reason),
runs the :class:`~dicomcrypt.net.scp.Receiver` and waits for a signal. Logging
(:mod:`dicomcrypt.logs`) goes to stderr or ``--log-file``, one ``key=value`` line (or JSON
object) per event; SIGHUP reopens the log file and the service keeps running.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomcrypt.cli._common import EXIT_OK, add_verbosity, error, peer_address, whole_number
from dicomcrypt.cli.encrypt import uid_root_argument
from dicomcrypt.dicom.output_syntax import OUTPUT_SYNTAX_CHOICES
from dicomcrypt.config import Option, add_arguments, resolve
from dicomcrypt.logs import FORMATS

if TYPE_CHECKING:
    from dicomcrypt.logs import LogSetup

def _http_address(text: str) -> tuple[str, int]:
    """An argparse ``type`` for ``--http HOST:PORT``."""
    from dicomcrypt.net.http_status import parse_http_address

    try:
        return parse_http_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    Option("--require-called-aet", type=bool, negatable=True,
           help="refuse associations whose called AE title is not --aet (default: True)"),
    Option("--quarantine", parse=Path, metavar="DIR",
           help="where refused instances go (default: OUT/quarantine, or SPOOL/quarantine)"),
    Option("--duplicates", choices=("keep-first", "replace"),
           help="a SOP Instance UID filed again with other content (default: keep-first)"),
    Option("--accept-plain", type=bool,
           help="file plain (unencrypted) images as received instead of refusing them"),
    Option("--max-associations", type=int, parse=whole_number(1), metavar="N",
           help="associations served at once (default: 10)"),
    Option("--restore-workers", type=int, parse=whole_number(0), metavar="N",
           help="worker processes that restore, so associations restore in parallel; 0: in each "
                "association's thread (default: one per CPU)"),
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
    Option("--log-format", choices=FORMATS, default="text",
           help="text lines (default) or one JSON object per line; UTC timestamps either way"),
    Option("--log-file", parse=Path, metavar="FILE",
           help="append the log to FILE instead of stderr; reopened on SIGHUP and when logrotate moves it"),
    Option("--tls-cert", metavar="FILE", group=_SERVER_TLS, help="our server certificate (PEM)"),
    Option("--tls-key", metavar="FILE", group=_SERVER_TLS, help="its private key (PEM)"),
    Option("--tls-ca", metavar="FILE", group=_SERVER_TLS, help="CA for client certificates: mutual TLS"),
    Option("--forward-tls-ca", metavar="FILE", group=_FORWARD_TLS, help="CA that signed the peer's certificate"),
    Option("--forward-tls-cert", metavar="FILE", group=_FORWARD_TLS, help="our client certificate"),
    Option("--forward-tls-key", metavar="FILE", group=_FORWARD_TLS, help="its private key"),
    Option("--spool", parse=Path, metavar="DIR",
           help="folder of the --forward queue (default: the --out folder; --forward needs one of them)"),
    Option("--forward-retry-first", type=float, metavar="SECONDS",
           help="wait before retrying a failed forward, doubled per failure in a row (default: 1)"),
    Option("--forward-retry-max", type=float, metavar="SECONDS",
           help="longest wait between forward retries (default: 300)"),
    Option("--forward-max-refusals", type=int, parse=whole_number(1), metavar="N",
           help="failure statuses from the --forward peer before an instance is quarantined (default: 10)"),
    Option("--http", parse=_http_address, metavar="HOST:PORT",
           help="serve /metrics, /healthz and /studies over HTTP here (default: off; e.g. 127.0.0.1:9110)"),
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
  dicomcrypt serve --port 11112 --aet GATEWAY --key site.key --forward PACS@10.0.0.5:104 --spool /var/spool/dicomcrypt

Each encrypted instance is verified and restored before it is answered; success means it is
on disk (written to a temporary file, fsynced, renamed) and, with --forward, in the forward
queue (SPOOL/.dicomcrypt-forward), which is delivered to the peer in the background with retries
and survives a PACS outage and a restart. --http HOST:PORT serves /metrics, /healthz, /studies.
Tampered, wrong-key, unknown-key and undecodable instances get a failure status with an error
comment and are kept under the quarantine folder with a JSON note, never among good data.
Plain images are refused (0xC005) unless --accept-plain (quarantine keeps their header, never
their pixels); non-image objects (SR, ...) pass through. --store encrypted keeps instances
byte for byte as received; a key, if given, is used only to authenticate them.
A SOP Instance UID received again with the same content is answered
success without a rewrite; with other content, --duplicates keep-first (default) refuses it
(0xC006) and quarantines it, replace files it and quarantines the old copy.

Before listening: the config file is checked whole (unknown tables and keys are errors), the
output and quarantine folders must be writable, keys and TLS files readable and valid; the
--forward peer is C-ECHOed (a warning only if it does not answer). The called AE title must be
--aet (--no-require-called-aet accepts any); every refused association is logged with its reason.

SIGTERM or Ctrl-C: stop accepting, finish the instances in flight, exit 0.
SIGHUP: reopen --log-file (after logrotate moved it), keep running.
Status codes, transfer syntaxes and TLS profiles: docs/conformance.md.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="receive, verify and restore DICOM instances (Storage SCP)",
        description=_DESCRIPTION,
        epilog="exit codes:\n  0    stopped by SIGTERM/Ctrl-C after finishing instances in flight\n"
        "  2    usage error\n  3    could not start (bad key, TLS file, config, log file, unwritable\n"
        "       output folder, port in use); the reason is printed\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p, OPTIONS, table="serve")
    add_verbosity(p, more="same as --log-level debug", fewer="same as --log-level warning (refusals only)")
    p.set_defaults(func=run, sets_up_logging=True)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.logs import configure

    try:
        config = _receiver_config(args)
        setup = configure(level=_log_level(args), fmt=args.log_format, file=args.log_file)
    except DicomCryptError as exc:
        return error(str(exc))
    try:
        return _serve(config, setup)
    finally:
        setup.restore()


def _log_level(args: argparse.Namespace) -> str:
    """--log-level, or what -v (debug) / -q (warning) ask for."""
    return {1: "DEBUG", -1: "WARNING"}.get(args.verbosity, str(args.log_level).upper())


def _serve(config: Any, setup: LogSetup) -> int:
    """Check, listen, wait for SIGTERM/SIGINT (stop) or SIGHUP (reopen the log file), stop."""
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.net.scp import Receiver

    log = logging.getLogger("dicomcrypt.serve")
    try:
        _check_before_listening(config)
        receiver = Receiver(config)
    except DicomCryptError as exc:
        return _not_started(str(exc), setup)
    stop, hangup = threading.Event(), threading.Event()
    handlers: dict[int, Callable[..., None]] = {signal.SIGTERM: lambda *_: stop.set(),
                                                signal.SIGINT: lambda *_: stop.set()}
    if hasattr(signal, "SIGHUP"):
        handlers[signal.SIGHUP] = lambda *_: hangup.set()
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        try:
            receiver.start()
        except OSError as exc:
            return _not_started(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", setup)
        except DicomCryptError as exc:  # the status endpoint's address
            return _not_started(str(exc), setup)
        while not stop.wait(timeout=0.5):
            if hangup.is_set():
                hangup.clear()
                setup.reopen()
                if setup.path is not None:
                    log.info("SIGHUP received: log file %s reopened; still serving", setup.path)
                else:
                    log.info("SIGHUP received: logging to stderr, no file to reopen; still serving")
        log.info("signal received: finishing instances in flight")
        receiver.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _not_started(reason: str, setup: LogSetup) -> int:
    """Say why on stderr (exit 3), and in the log file too when there is one (a service's
    stderr may go nowhere an administrator looks)."""
    if setup.path is not None:
        logging.getLogger("dicomcrypt.serve").error("not started: %s", reason)
    return error(reason)


def _check_before_listening(config: Any) -> None:
    """What would otherwise fail every instance later, checked now: the output and quarantine
    folders are made if missing and must take a file; the --forward peer is C-ECHOed, a warning
    only (the PACS may come up after us). Keys and TLS files were read when the config was built.
    Raises ReceiverConfigError naming the folder and the reason."""
    for what, folder in (("--out", config.out), ("--spool", config.spool), ("--quarantine", config.quarantine_dir)):
        if folder is not None:
            _check_writable(what, Path(folder))
    if config.forward is not None:
        from dicomcrypt.errors import AssociationError
        from dicomcrypt.net.scu import echo

        log = logging.getLogger("dicomcrypt.serve")
        try:
            status = echo(config.forward, calling_aet=config.ae_title, ssl_context=config.forward_ssl_context,
                          timeout=min(config.forward_timeout, 10.0))
        except AssociationError as exc:
            log.warning("downstream %s does not answer C-ECHO now (%s); serving anyway", config.forward, exc)
        else:
            if status != 0x0000:
                log.warning("downstream %s answered C-ECHO with status 0x%04X", config.forward, status)
            else:
                log.info("downstream %s answered C-ECHO", config.forward)


def _check_writable(what: str, folder: Path) -> None:
    """Make ``folder`` if missing and write (then remove) a file in it; ReceiverConfigError if not."""
    import tempfile

    from dicomcrypt.errors import ReceiverConfigError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dicomcrypt-write-check-"):
            pass
    except OSError as exc:
        raise ReceiverConfigError(f"{what} {folder}: cannot write there ({exc.strerror or exc}); the service "
                                  "user needs write access (docs/operations.md)") from None


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
