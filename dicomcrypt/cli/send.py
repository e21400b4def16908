"""``dicomcrypt send``: C-STORE files or whole study folders to a receiver, encrypting on the fly.

Plain images are encrypted (in worker processes, while earlier instances are on the wire) for
the site key --key and/or the public recipients --recipient / --recipients-file, as `encrypt`
does (and --latent, --protect-identity --identity-cert too): with recipients only, nodes
exchange nothing but public keys. Files already encrypted by
dicomcrypt and non-images (SR, RT Plan, ...) are sent as they are. With neither a key nor a
recipient, plain images are refused unless --plain: pixels never leave in clear by mistake. One association by default (--associations N for more, in parallel); presentation
contexts are proposed from the files' SOP classes and transfer syntaxes.

The run ends with a per-study summary: instances sent and how, non-images passed through, and
each failure with the peer's status code and comment. --failed-list FILE writes the paths
that did not arrive; --retry-failed FILE sends exactly those again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dicomcrypt.cli import _scu_options, _targets
from dicomcrypt.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    error,
    whole_number,
)

MODES = ("lossless", "lossy", "standard")

SETTINGS: dict[str, type] = {
    "key": str,
    "recipient": list,
    "recipients_file": list,
    "mode": str,
    "model": str,
    "plain": bool,
    "associations": int,
    "retries": int,
    "jobs": int,
    "failed_list": str,
}
"""What a ``[send]`` table of ``--config`` may set (besides the shared client options)."""

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
    _scu_options.add_client_arguments(parser, table="send")
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="DICOM files or folders (recursive)")
    parser.add_argument("--key", "-k", default=None, metavar="FILE",
                        help="site key file, or a keyring .toml (its 'encrypt' list): encrypt plain images for it")
    parser.add_argument("--recipient", "-r", action="append", default=None, metavar="STRING",
                        help="public recipient string dcrecip1... (from keygen --recipient): encrypt plain images "
                             "for it too; repeat for several")
    parser.add_argument("--recipients-file", "-R", action="append", default=None, metavar="FILE",
                        help="file of recipient strings, one per line ('#' comments)")
    parser.add_argument("--mode", "-m", choices=MODES, default=None, help="encryption mode (default: lossless)")
    parser.add_argument("--model", default=None, metavar="ID", help="autoencoder model id (default: by colour)")
    _targets.add_latent_and_identity_options(parser)
    parser.add_argument("--plain", action="store_true", default=None,
                        help="allow plain images to be sent unencrypted when no --key or --recipient is given")
    parser.add_argument("--associations", type=whole_number(1), default=None, metavar="N",
                        help="parallel associations to the peer (default: 1)")
    parser.add_argument("--retries", type=whole_number(0), default=None, metavar="N",
                        help="re-sends after a lost connection or an out-of-resources answer (default: 2)")
    parser.add_argument("--jobs", "-j", type=whole_number(1), default=None, metavar="N",
                        help="processes encrypting ahead of the sender (default: all CPUs)")
    parser.add_argument("--failed-list", default=None, metavar="FILE",
                        help="write the paths that did not arrive to FILE (one per line)")
    parser.add_argument("--retry-failed", default=None, metavar="FILE",
                        help="send the paths listed in FILE (a --failed-list of an earlier run)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity",
                           help="a line per instance")
    verbosity.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                           help="no summary unless something failed")
    parser.set_defaults(func=run, verbosity=0)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.cli.encrypt import default_jobs
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.net.address import parse_peer
    from dicomcrypt.net.scu import send
    from dicomcrypt.net.send_report import read_failed_list, write_failed_list

    usage = _targets.identity_options_usage_error("send", args)
    if usage is not None:
        return usage
    try:
        _scu_options.apply_defaults(
            args, "send", SETTINGS,
            {"recipient": [], "recipients_file": [], "mode": "lossless", "plain": False, "associations": 1,
             "retries": 2, "jobs": default_jobs(), "timeout": 600.0},
        )
        if args.mode not in MODES:
            return error(f"mode {args.mode!r} (from --config) is not one of {', '.join(MODES)}")
        for name, minimum in (("associations", 1), ("jobs", 1), ("retries", 0)):
            if getattr(args, name) < minimum:
                return error(f"{name} must be {minimum} or more, not {getattr(args, name)} (from --config)")
        peer = parse_peer(args.peer)
        paths = [str(p) for p in args.paths]
        if args.retry_failed:
            paths += read_failed_list(args.retry_failed)
        if not paths:
            return error("nothing to send: give PATH arguments or --retry-failed FILE")
        for path in paths:
            if not Path(path).exists():
                return error(f"input {path}: no such file or folder")
        settings = _targets.encryption_settings_from_args(
            args.key, args.recipient, args.recipients_file, mode=args.mode, model=args.model,
            latent_format=args.latent_format, identity_certs=args.identity_cert,
        )
        if settings is None and args.protect_identity:
            return error("--protect-identity needs --key or --recipient: the identity is encrypted for them")
        ssl_context = _scu_options.ssl_context(args)
    except DicomCryptError as exc:
        return error(str(exc))

    show_bar = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(unit="inst", file=sys.stderr, desc="send", dynamic_ncols=True)

    def on_start(total: int) -> None:
        if bar is not None:
            bar.reset(total=total)

    def progress(result) -> None:
        from dicomcrypt.net.send_report import describe_failure, describe_treatment

        if bar is not None:
            bar.update(1)
        if args.verbosity >= 1:
            if result.arrived:
                line = f"sent    {result.path} ({describe_treatment(result)})"
            else:
                line = f"FAILED  {result.path}: {describe_failure(result)}"
            (bar.write if bar is not None else print)(line)

    try:
        report = send(
            paths, peer, calling_aet=args.aet, settings=settings,
            allow_plain=args.plain, ssl_context=ssl_context, associations=args.associations,
            retries=args.retries, workers=args.jobs, timeout=args.timeout, progress=progress,
            on_start=on_start,
        )
    except DicomCryptError as exc:  # plaintext refused, first association failed, bad input path
        return error(str(exc))
    finally:
        if bar is not None:
            bar.close()

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
