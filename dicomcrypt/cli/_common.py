"""What every subcommand shares: exit codes, their help text, small formatting helpers.

Kept free of heavy imports: building the parser must not load numpy, pydicom or torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK = 0
"""Everything asked for was done (files skipped because their output exists count as done)."""
EXIT_SOME_FAILED = 1
"""The command ran, but at least one file failed; the summary lists each one."""
EXIT_USAGE = 2
"""The command line is wrong (argparse's own convention)."""
EXIT_NOT_STARTED = 3
"""Nothing could start: unreadable key file, missing input, output inside the input, ..."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (128 + SIGINT); outputs already written are complete."""

EXIT_CODES_EPILOG = f"""\
exit codes:
  {EXIT_OK}    success (every file done, passed through or skipped)
  {EXIT_SOME_FAILED}    some files failed (each is listed in the summary)
  {EXIT_USAGE}    usage error (bad command line)
  {EXIT_NOT_STARTED}    nothing could start (bad key file, missing input, OUT inside IN, ...)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); outputs already written are complete
"""


def error(message: str) -> int:
    """Report a fatal problem on stderr; returns the 'nothing could start' exit code."""
    print(f"dicomcrypt: error: {message}", file=sys.stderr)
    return EXIT_NOT_STARTED


def human_bytes(n: float) -> str:
    """1536 -> '1.5 kB' (SI units, as file managers show them)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` accepting whole numbers >= ``minimum`` (``--jobs``, ``--retries``),
    and <= ``maximum`` if given (``--port``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if maximum is not None and not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more")
        return value

    return parse


def add_verbosity(parser: argparse.ArgumentParser, *, more: str, fewer: str) -> None:
    """``-v/--verbose`` and ``-q/--quiet`` as ``args.verbosity`` (1, -1, default 0): every command
    spells them alike; ``more``/``fewer`` say what they change for this command."""
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity", help=more)
    verbosity.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity", help=fewer)
    parser.set_defaults(verbosity=0)


def peer_address(text: str) -> Any:
    """An argparse ``type`` for ``AET@host:port`` (``serve --forward``): the parsed ``Peer``."""
    from dicomcrypt.errors import InvalidInputError
    from dicomcrypt.net.address import parse_peer

    try:
        return parse_peer(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
