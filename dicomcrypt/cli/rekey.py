"""``dicomcrypt rekey``: give encrypted files new keys without touching their pixel ciphertext."""

from __future__ import annotations

import argparse

from dicomcrypt.cli._common import EXIT_CODES_EPILOG


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from dicomcrypt.cli.encrypt import _BATCH_NOTES, _add_batch_arguments, add_opening_keys

    parser = subparsers.add_parser(
        "rekey",
        help="re-wrap the data keys of encrypted files for new keys or recipients",
        description=(
            "Re-wrap the data key of every encrypted file under IN for the keys and recipients\n"
            "given with --to, writing the result under OUT. The encrypted payload (pixels and all)\n"
            "is kept byte for byte; only the key stanzas and the readable key ids change. Each file\n"
            "is fully authenticated with --key first, so a damaged or altered file is never re-keyed.\n\n"
            "Without --keep, only the --to keys can open the output: that retires an old key.\n"
            "With --keep, the existing holders keep access and the --to keys are added.\n"
            "Without --to, a keyring .toml given with --key supplies its 'encrypt' list.\n"
            "Files from dicomcrypt before format version 2 are re-sealed as version 2 (new data key,\n"
            "same payload), because their authentication tag covers the key stanzas.\n"
            + _BATCH_NOTES
        ),
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_opening_keys(parser, "key that opens the files")
    parser.add_argument("--to", "-t", action="append", default=[], metavar="TARGET",
                        help="new holder: a site key file or a recipient string dcrecip1...; repeat for several")
    parser.add_argument("--keep", action="store_true",
                        help="keep the existing key stanzas and add the --to ones")
    _add_batch_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.cli._common import error
    from dicomcrypt.cli.encrypt import run_job
    from dicomcrypt.crypto import KeyRing, parse_target
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.runner import RekeyJob

    try:
        ring = KeyRing.load(args.keys)
        targets = [parse_target(t)[0] for t in args.to] or list(ring.encrypt_to)
    except (DicomCryptError, OSError) as exc:
        return error(str(exc))
    if not targets:
        return error("rekey needs --to (key files or recipient strings), or a keyring .toml with an 'encrypt' list")
    return run_job(RekeyJob(ring, tuple(targets), keep=args.keep), args)
