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
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dicomcrypt.cli._common import EXIT_USAGE
from dicomcrypt.config import Option
from dicomcrypt.settings import EFFORTS, LATENT_FORMATS, MAX_PSNR_DB, MIN_PSNR_DB
from dicomcrypt.errors import InvalidInputError, KeyFileError

if TYPE_CHECKING:
    from dicomcrypt.crypto import Key, KeyRing
    from dicomcrypt.settings import EncryptionSettings

NO_TARGET_HINT = "give --key, --recipient or --recipients-file (who can decrypt?)"
ENCRYPTION_OPTIONS: list[Option] = [
    Option("--key", "-k", metavar="FILE",
           help="site key file (from dicomcrypt keygen), or a keyring .toml: its 'encrypt' list"),
    Option("--recipient", "-r", repeatable=True, metavar="STRING",
           help="public recipient string dcrecip1... (from keygen --recipient); repeat for several"),
    Option("--recipients-file", "-R", repeatable=True, metavar="FILE",
           help="file of recipient strings, one per line ('#' comments)"),
    Option("--model", metavar="ID",
           help="model id: wavelet-grey@1 / wavelet-colour@1 (the codec, default by the image's colour) "
                "or an autoencoder such as ps-grey@2"),
    Option("--quality", type=int, metavar="Q",
           help="lossy wavelet codec quality 1..100 (default 60; docs/codec.md gives the dB per level)"),
    Option("--psnr", type=float, metavar="DB",
           help="lossy wavelet codec: the smallest stream reaching this PSNR over each image's value range "
                f"({MIN_PSNR_DB:g}..{MAX_PSNR_DB:g} dB), instead of --quality"),
    Option("--effort", choices=EFFORTS,
           help="lossless wavelet codec: which exact codings each frame tries, the smallest kept: fast "
                "(JPEG-LS, JPEG-XL effort 1), balanced (default; also JPEG-XL effort 3), smallest (also "
                "JPEG-XL effort 7 and the wavelet stream; about 10x slower); decoding needs no setting"),
    Option("--latent", choices=LATENT_FORMATS, default="u8",
           help="latent storage: 8-bit quantised (default) or float16"),
    Option("--protect-identity", type=bool, default=False,
           help="also replace the identifying attributes (PS3.15 Annex E basic profile) by dummies and "
                "encrypt their originals into the Encrypted Attributes Sequence, for --identity-cert"),
    Option("--identity-cert", repeatable=True, metavar="CERT.pem",
           help="RSA certificate of who may restore the identity (with --protect-identity); repeat for several"),
]
"""Who an encrypting command seals for and how (besides the mode): declared once for
``encrypt`` and ``send`` (whose ``[send]`` config table may set them too)."""


def identity_options_usage_error(command: str, args: argparse.Namespace) -> int | None:
    """``EXIT_USAGE`` after saying why, when only one of --protect-identity and --identity-cert is given."""
    if args.protect_identity == bool(args.identity_cert):
        return None
    print(f"dicomcrypt {command}: error: --protect-identity and --identity-cert go together "
          "(whose certificate can restore the identity?)", file=sys.stderr)
    return EXIT_USAGE


def encryption_settings_from_args(args: argparse.Namespace) -> EncryptionSettings | None:
    """The settings that :data:`ENCRYPTION_OPTIONS` and ``--mode`` ask for, loaded and checked before
    any file is touched; None when no key and no recipient is given (whether that is an error is
    the command's call).

    Raises KeyFileError (unreadable key or certificate, empty keyring 'encrypt' list, a recipient
    *private* key where the public string belongs), RecipientFormatError, InvalidInputError (too
    many stanzas, a recipient given twice, unreadable recipients file).
    """
    from dicomcrypt.crypto import Recipient
    from dicomcrypt.settings import EncryptionSettings

    parsed = [Recipient.parse(r) for r in recipient_strings(args.recipient, args.recipients_file)]
    key = _load_key(Path(args.key)) if args.key is not None else None
    if key is None and not parsed:
        return None
    protection = None
    if args.identity_cert:
        from dicomcrypt.identity_protection import IdentityProtection

        protection = IdentityProtection.load(args.identity_cert)  # one uid_secret for the whole run
    return EncryptionSettings.build(
        key=key, recipients=parsed, mode=args.mode, model=args.model, latent_format=args.latent,
        protect_identity=protection, quality=args.quality, psnr=args.psnr, effort=args.effort,
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
        reason = getattr(exc, "strerror", None) or exc
        raise InvalidInputError(f"recipients file {path}: cannot read ({reason})") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    found = [line for line in lines if line]
    if not found:
        raise InvalidInputError(
            f"recipients file {path}: lists no recipients (expected one dcrecip1... string per line)"
        )
    return found


def recipient_strings(given: Iterable[str], files: Iterable[str | os.PathLike[str]] = ()) -> tuple[str, ...]:
    """The recipient strings of ``--recipient`` followed by those of each ``--recipients-file``."""
    found = list(given)
    for path in files:
        found += read_recipients_file(Path(path))
    return tuple(found)
