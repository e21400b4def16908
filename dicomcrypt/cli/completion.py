"""``dicomcrypt completion bash|zsh``: print a shell completion script for every command and option.

Generated from the real parser by shtab, so it can never list an option the command does not
take. Install it once, e.g.::

    dicomcrypt completion bash | sudo tee /etc/bash_completion.d/dicomcrypt
    dicomcrypt completion zsh > "${fpath[1]}/_dicomcrypt"
"""

from __future__ import annotations

import argparse
import sys

from dicomcrypt.cli._common import EXIT_OK

SHELLS = ("bash", "zsh")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete for")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from dicomcrypt.cli.main import _setup_argparser

    sys.stdout.write(shtab.complete(_setup_argparser(), shell=args.shell))
    return EXIT_OK
