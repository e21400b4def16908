"""``dicomcrypt keygen``: make a new 256-bit site key file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_OK, error


def add_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="make a new 256-bit site key file",
        description=(
            "Write a new random 256-bit site key to FILE (mode 0600) and print its key id on stdout.\n"
            "Share the file only with the sites that must decrypt, over a secure channel: anyone\n"
            "holding it can decrypt. The key id is not secret; encrypted files carry it to say which\n"
            "key they need."
        ),
        epilog=EXIT_CODES_EPILOG
        + "\nAn existing file is never overwritten: losing a key loses every file encrypted with it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", "-o", required=True, type=Path, metavar="FILE",
        help="key file to create, e.g. site.key (decrypt --key FOLDER reads *.key files)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.crypto import Key
    from dicomcrypt.errors import DicomCryptError, OutputExistsError

    key = Key.generate()
    try:
        key.save(args.out)
    except OutputExistsError:
        return error(f"{args.out} exists; not overwritten (a lost key cannot be recovered)")
    except (DicomCryptError, OSError) as exc:
        return error(str(exc))
    print(key.key_id)
    print(f"wrote key file {args.out} (key id {key.key_id}); keep it secret and backed up", file=sys.stderr)
    return EXIT_OK
