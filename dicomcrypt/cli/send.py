"""``dicomcrypt send``: C-STORE files or whole study folders to a receiver, encrypting on the fly.

Plain images are encrypted (in worker processes, while earlier instances are on the wire) for
the site key --key and/or the public recipients --recipient / --recipients-file, as `encrypt`
does (and --latent, --protect-identity --identity-cert too): with recipients only, nodes
exchange nothing but public keys. Files already encrypted by dicomcrypt and non-images (SR,
RT Plan, ...) are sent as they are. With neither a key nor a recipient, plain images are refused
unless --plain: pixels never leave in clear by mistake. One association by default
(--associations N for more, in parallel, when this sender has the receiver to itself: it then
restores N instances at once); presentation contexts are proposed from the files' SOP classes
and transfer syntaxes.

The run ends with a per-study summary: instances sent and how, non-images passed through, and
each failure with the peer's status code and comment. --failed-list FILE writes the paths
that did not arrive; --retry-failed FILE sends exactly those again.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dicomcrypt.cli import _scu_options, _targets
from dicomcrypt.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    add_verbosity,
    error,
    whole_number,
)
from dicomcrypt.runner.worker import usable_cpus
from dicomcrypt.config import Option, add_arguments, resolve

if TYPE_CHECKING:
    import ssl

    from dicomcrypt.net.address import Peer
    from dicomcrypt.net.send_report import InstanceResult, SendReport
    from dicomcrypt.settings import EncryptionSettings

MODES = ("lossless", "lossy", "standard")

OPTIONS: list[Option] = [
    *_scu_options.client_options(timeout=600.0),
    *_targets.ENCRYPTION_OPTIONS,
    Option("--mode", "-m", choices=MODES, default="lossless", help="encryption mode (default: lossless)"),
    Option("--plain", type=bool, default=False,
           help="allow plain images to be sent unencrypted when no --key or --recipient is given"),
    Option("--associations", type=int, parse=whole_number(1), default=1, metavar="N",
           help="parallel associations to the peer (default: 1, a fair share of a receiver's slots; "
                "the receiver restores one instance per association at a time)"),
    Option("--retries", type=int, parse=whole_number(0), default=2, metavar="N",
           help="re-sends after a lost connection or an out-of-resources answer (default: 2)"),
    Option("--jobs", "-j", type=int, parse=whole_number(1), default=usable_cpus, metavar="N",
           help="processes encrypting ahead of the sender (default: all CPUs)"),
    Option("--failed-list", metavar="FILE", help="write the paths that did not arrive to FILE (one per line)"),
    Option("--retry-failed", metavar="FILE", in_file=False,
           help="send the paths listed in FILE (a --failed-list of an earlier run)"),
    Option("--progress", type=bool, negatable=True, in_file=False,
           help="progress bar on stderr (default: when stderr is a terminal)"),
]
"""Every option of ``send``; a ``[send]`` table of ``--config`` may set those with ``in_file``."""

_EPILOG = (
    "exit codes:\n"
    f"  {EXIT_OK}    every instance arrived (the peer answered success or warning)\n"
    f"  {EXIT_SOME_FAILED}    some instances did not arrive (each is listed with the reason)\n"
    "  2    usage error (bad command line)\n"
    "  3    nothing was sent: bad key, recipient, TLS or config file; plain images with no key,\n"
    "       recipient or --plain;\n"
    "       peer unreachable or association rejected\n"
    f"  {EXIT_INTERRUPTED}  interrupted (Ctrl-C) after the instances in flight\n"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "send",
        help="send DICOM files or study folders to a receiver (C-STORE), encrypting on the fly",
        description=__doc__ + "\n" + _scu_options.TLS_NOTES,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _scu_options.add_peer_argument(parser)
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="DICOM files or folders (recursive)")
    add_arguments(parser, OPTIONS, table="send")
    parser.add_argument("--lossy", dest="mode", action="store_const", const="lossy", help="same as --mode lossy")
    add_verbosity(parser, more="a line per instance", fewer="no summary unless something failed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.net.scu import send

    try:
        plan = _plan(args)
    except DicomCryptError as exc:
        return error(str(exc))
    if isinstance(plan, int):
        return plan
    progress = _Progress(args)
    try:
        report = send(
            plan.paths, plan.peer, calling_aet=args.aet, settings=plan.settings,
            allow_plain=args.plain, ssl_context=plan.ssl_context, associations=args.associations,
            retries=args.retries, workers=args.jobs, timeout=args.timeout, progress=progress.instance_done,
            on_start=progress.start,
        )
    except DicomCryptError as exc:  # plaintext refused, first association failed, bad input path
        return error(str(exc))
    finally:
        progress.close()
    return _finish(args, report)


@dataclass(frozen=True)
class _Plan:
    """What ``send`` will do, checked before anything is read or sent."""

    paths: list[str]
    peer: Peer
    settings: EncryptionSettings | None
    ssl_context: ssl.SSLContext | None


def _plan(args: argparse.Namespace) -> _Plan | int:
    """The paths, peer, encryption settings and TLS context the options ask for, or the exit code
    of a usage error. Raises :class:`DicomCryptError` (bad key, recipient, TLS or config file)."""
    from dicomcrypt.net.address import parse_peer
    from dicomcrypt.net.send_report import read_failed_list

    resolve(args, OPTIONS, table="send")
    usage = _targets.identity_options_usage_error("send", args)
    if usage is not None:
        return usage
    peer = parse_peer(args.peer)
    paths = [str(p) for p in args.paths]
    if args.retry_failed:
        paths += read_failed_list(args.retry_failed)
    if not paths:
        return error("nothing to send: give PATH arguments or --retry-failed FILE")
    for path in paths:
        if not Path(path).exists():
            return error(f"input {path}: no such file or folder")
    settings = _targets.encryption_settings_from_args(args)
    if settings is None and args.protect_identity:
        return error("--protect-identity needs --key or --recipient: the identity is encrypted for them")
    return _Plan(paths, peer, settings, _scu_options.ssl_context(args))


class _Progress:
    """The progress bar (--progress, or stderr is a terminal) and the per-instance lines of --verbose."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.verbose = args.verbosity >= 1
        self.bar = None
        if args.progress if args.progress is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(unit="inst", file=sys.stderr, desc="send", dynamic_ncols=True)

    def start(self, total: int) -> None:
        if self.bar is not None:
            self.bar.reset(total=total)

    def instance_done(self, result: InstanceResult) -> None:
        from dicomcrypt.net.send_report import instance_line

        if self.bar is not None:
            self.bar.update(1)
        if self.verbose:
            (self.bar.write if self.bar is not None else print)(instance_line(result))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _finish(args: argparse.Namespace, report: SendReport) -> int:
    """Print the summary, write --failed-list, and choose the exit code."""
    from dicomcrypt.net.send_report import write_failed_list

    if args.verbosity >= 0 or report.failed:
        print(report.summary())
    if args.failed_list:
        count = write_failed_list(args.failed_list, report)
        if count:
            print(f"{count} path(s) that did not arrive written to {args.failed_list}; "
                  f"re-send them with --retry-failed {args.failed_list}")
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.all_arrived else EXIT_SOME_FAILED
