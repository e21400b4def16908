"""``dicomcrypt``: the command line. It parses arguments, calls the library, maps errors to
exit codes and draws progress; nothing else (docs/cli.md).

Each subcommand lives in its own module with ``add_parser(s)`` and ``run(args) -> int``;
heavy imports happen inside ``run`` so ``--help`` and ``inspect`` stay fast and torch-free.
Tests call :func:`main` in-process: ``main(["encrypt", ...]) == 0``.

What every command shares is added here, once, to each subparser (:func:`_add_common_options`):
``-v/-q``, ``--log-format``, ``--log-file`` and the exit-code epilog; :func:`main` sets up logging
(:mod:`dicomcrypt.logs`) around the command, except for ``serve``, which reads its logging
options from its config file too and sets up its own.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from dicomcrypt.cli import (
    bench,
    echo,
    encrypt,
    evaluate,
    inspect,
    jobs,
    keygen,
    models,
    orthanc_script,
    rekey,
    roundtrip,
    send,
    serve,
    train,
)
from dicomcrypt.cli import completion
from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_INTERRUPTED, EXIT_USAGE, add_verbosity, error


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dicomcrypt")
    except Exception:  # running from a source tree that is not installed
        from dicomcrypt import __version__

        return __version__


def _setup_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomcrypt",
        description=(
            "Encrypt DICOM pixel data with an autoencoder and AES-256-GCM (Alslman et al. 2022),\n"
            "lossless by default. Typical use:\n\n"
            "  dicomcrypt keygen --out site.key\n"
            "  dicomcrypt encrypt --key site.key study/ study-enc/\n"
            "  dicomcrypt inspect study-enc/\n"
            "  dicomcrypt decrypt --key site.key study-enc/ study-restored/\n"
        ),
        epilog=EXIT_CODES_EPILOG + "\nRun 'dicomcrypt COMMAND --help' for a command's options; see docs/cli.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dicomcrypt {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)
    keygen.add_parser(subparsers)
    encrypt.add_parsers(subparsers)
    rekey.add_parser(subparsers)
    jobs.add_parser(subparsers)
    inspect.add_parser(subparsers)
    roundtrip.add_parser(subparsers)
    send.add_parser(subparsers)
    echo.add_parser(subparsers)
    serve.add_parser(subparsers)
    orthanc_script.add_parser(subparsers)
    models.add_parser(subparsers)
    evaluate.add_parser(subparsers)
    bench.add_parser(subparsers)
    train.add_parser(subparsers)
    completion.add_parser(subparsers)
    for subparser in subparsers.choices.values():
        _add_common_options(subparser)
    return parser


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    """``-v/-q``, ``--log-format``, ``--log-file`` and the exit-code help, on a command that does
    not declare them itself (``send`` has its own -v/-q, ``serve`` its logging options)."""
    if parser.epilog is None:
        parser.epilog = EXIT_CODES_EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    if "-v" not in parser._option_string_actions:
        add_verbosity(parser, more="more log lines (info)", fewer="fewer log lines (errors only)")
    logging_options = parser.add_argument_group("logging")
    if "--log-format" not in parser._option_string_actions:
        logging_options.add_argument("--log-format", choices=("text", "json"), default="text",
                                     help="log lines as text (default) or one JSON object per line")
    if "--log-file" not in parser._option_string_actions:
        logging_options.add_argument("--log-file", metavar="FILE", default=None,
                                     help="append log lines to FILE (logrotate-friendly) instead of stderr")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse's own exits are returned too)."""
    parser = _setup_argparser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
    if getattr(args, "sets_up_logging", False):  # serve: its config file may set the logging options
        return _run(args)
    from dicomcrypt.errors import ConfigError
    from dicomcrypt.logs import configure, level_for

    try:
        # pynetdicom's own lines only with -v: a command reports a failed association once, itself
        setup = configure(level=level_for(args.verbosity), fmt=args.log_format, file=args.log_file, timestamps=False,
                          library_level=logging.WARNING if args.verbosity >= 1 else logging.CRITICAL + 1)
    except ConfigError as exc:
        return error(str(exc))
    try:
        return _run(args)
    finally:
        setup.restore()


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:  # Ctrl-C before a command's own handling (imports, planning)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
