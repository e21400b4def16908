"""Who an encrypting command seals for, and how: ``--key`` (site key or keyring .toml),
``--recipient``, ``--recipients-file``, the mode, model, ``--latent`` and ``--protect-identity
--identity-cert``, turned into one :class:`~dicomcrypt.settings.EncryptionSettings`.

One loader and one declaration of the shared options, so ``encrypt`` and ``send`` accept,
check and refuse the same things with the same messages, before any file is touched. The
checks themselves (target count, a recipient given twice) live in :mod:`dicomcrypt.settings`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dicomcrypt.cli._common import EXIT_USAGE
from dicomcrypt.errors import InvalidInputError, KeyFileError

if TYPE_CHECKING:
    from dicomcrypt.crypto import Key, KeyRing
    from dicomcrypt.settings import EncryptionSettings

NO_TARGET_HINT = "give --key, --recipient or --recipients-file (who can decrypt?)"
LATENT_FORMATS = ("u8", "f16")  # dicomcrypt.settings.LATENT_FORMATS, spelled here to keep the parser light


def add_latent_and_identity_options(parser: argparse.ArgumentParser) -> None:
    """``--latent``, ``--protect-identity``, ``--identity-cert``: the same on every encrypting command."""
    parser.add_argument("--protect-identity", action="store_true",
                        help="also replace the identifying attributes (PS3.15 Annex E basic profile) by dummies and "
                             "encrypt their originals into the Encrypted Attributes Sequence, for --identity-cert")
    parser.add_argument("--identity-cert", action="append", default=[], type=Path, metavar="CERT.pem",
                        help="RSA certificate of who may restore the identity (with --protect-identity); "
                             "repeat for several")
    parser.add_argument("--latent", choices=LATENT_FORMATS, default="u8", dest="latent_format",
                        help="latent storage: 8-bit quantised (default) or float16")


def identity_options_usage_error(command: str, args: argparse.Namespace) -> int | None:
    """``EXIT_USAGE`` after saying why, when only one of --protect-identity and --identity-cert is given."""
    if args.protect_identity == bool(args.identity_cert):
        return None
    print(f"dicomcrypt {command}: error: --protect-identity and --identity-cert go together "
          "(whose certificate can restore the identity?)", file=sys.stderr)
    return EXIT_USAGE


def encryption_settings_from_args(
    key_path: str | os.PathLike[str] | None,
    recipients: Iterable[str] = (),
    recipient_files: Iterable[str | os.PathLike[str]] = (),
    *,
    mode: str = "lossless",
    model: str | None = None,
    latent_format: str = "u8",
    identity_certs: Sequence[str | Path] = (),
) -> EncryptionSettings | None:
    """The settings to seal with, loaded and checked before any file is touched; None when no key
    and no recipient is given (whether that is an error is the command's call).

    Raises KeyFileError (unreadable key or certificate, empty keyring 'encrypt' list, a recipient
    *private* key where the public string belongs), RecipientFormatError, InvalidInputError (too
    many stanzas, a recipient given twice, unreadable recipients file).
    """
    from dicomcrypt.crypto import Recipient
    from dicomcrypt.settings import EncryptionSettings

    parsed = [Recipient.parse(r) for r in recipient_strings(recipients, recipient_files)]
    key = _load_key(Path(key_path)) if key_path is not None else None
    if key is None and not parsed:
        return None
    protection = None
    if identity_certs:
        from dicomcrypt.identity_protection import IdentityProtection

        protection = IdentityProtection.load(identity_certs)  # one uid_secret for the whole run
    return EncryptionSettings.build(
        key=key, recipients=parsed, mode=mode, model=model, latent_format=latent_format,
        protect_identity=protection,
    )


def _load_key(path: Path) -> Key | KeyRing:
    from dicomcrypt.crypto import KeyRing, RecipientKey, load_secret

    key = KeyRing.load(path) if path.suffix.lower() == ".toml" else load_secret(path)
    if isinstance(key, KeyRing) and not key.encrypt_to:
        raise KeyFileError(f"keyring {path}: its 'encrypt' list is empty, so it names nothing to encrypt for")
    if isinstance(key, RecipientKey):
        raise KeyFileError(
            f"{path} is a recipient private key; encrypt with its public recipient string "
            f"(dicomcrypt keygen --public {path})"
        )
    return key


def read_recipients_file(path: Path) -> list[str]:
    """Recipient strings of a recipients file: one per line, blank lines and '#' comments ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"recipients file {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    found = [line for line in lines if line]
    if not found:
        raise InvalidInputError(f"recipients file {path}: lists no recipients (expected one dcrecip1... string per line)")
    return found


def recipient_strings(given: Iterable[str], files: Iterable[str | os.PathLike[str]] = ()) -> tuple[str, ...]:
    """The recipient strings of ``--recipient`` followed by those of each ``--recipients-file``."""
    found = list(given)
    for path in files:
        found += read_recipients_file(Path(path))
    return tuple(found)
