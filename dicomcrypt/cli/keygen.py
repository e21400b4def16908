"""``dicomcrypt keygen``: make a site key, or a recipient key pair, or show a recipient's public string."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_OK, error


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="make a site key, or a recipient key pair for a receiving node",
        description=(
            "Site key (default): write a new random 256-bit site key to FILE (mode 0600) and print\n"
            "its key id on stdout. Share the file only with the sites that must decrypt, over a\n"
            "secure channel: anyone holding it can decrypt.\n\n"
            "Recipient (--recipient): write a new X25519 private key to FILE (mode 0600) and print\n"
            "its public recipient string (dcrecip1...) on stdout. Keep FILE on the receiving node\n"
            "only; give the recipient string to senders (encrypt --recipient). It is not secret.\n\n"
            "--public FILE prints the recipient string of an existing recipient private key file.\n\n"
            "Key ids and recipient strings are not secret; encrypted files carry key ids to say\n"
            "which key they need."
        ),
        epilog=EXIT_CODES_EPILOG
        + "\nAn existing file is never overwritten: losing a key loses every file encrypted with it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--out", "-o", type=Path, metavar="FILE",
        help="key file to create, e.g. site.key or node.key (decrypt --key FOLDER reads *.key files)",
    )
    action.add_argument(
        "--public", type=Path, metavar="FILE",
        help="print the recipient string of this recipient private key file, and exit",
    )
    parser.add_argument(
        "--recipient", action="store_true",
        help="with --out: make a recipient key pair (HPKE X25519) instead of a site key",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.crypto import Key, RecipientKey
    from dicomcrypt.errors import DicomCryptError, OutputExistsError

    if args.public is not None:
        if args.recipient:
            return error("--public reads an existing key; --recipient makes a new one: give one of them")
        try:
            secret = RecipientKey.load(args.public)
        except DicomCryptError as exc:
            return error(str(exc))
        print(secret.recipient)
        return EXIT_OK

    key: Key | RecipientKey = RecipientKey.generate() if args.recipient else Key.generate()
    try:
        key.save(args.out)
    except OutputExistsError:
        return error(f"{args.out} exists; not overwritten (a lost key cannot be recovered)")
    except (DicomCryptError, OSError) as exc:
        return error(str(exc))
    if isinstance(key, RecipientKey):
        print(key.recipient)
        print(
            f"wrote recipient private key {args.out} (key id {key.key_id}); keep it secret and backed up. "
            "Give senders the recipient string above.",
            file=sys.stderr,
        )
    else:
        print(key.key_id)
        print(f"wrote key file {args.out} (key id {key.key_id}); keep it secret and backed up", file=sys.stderr)
    return EXIT_OK
