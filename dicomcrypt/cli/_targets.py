"""Who an encrypting command seals for: ``--key`` (site key or keyring .toml), ``--recipient``
and ``--recipients-file``. One loader, so ``encrypt`` and ``send`` accept, check and refuse
the same things with the same messages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Union

from dicomcrypt.errors import InvalidInputError, KeyFileError

if TYPE_CHECKING:
    from dicomcrypt.crypto import Key, KeyRing, Recipient

    SealingKey = Union[Key, KeyRing]

NO_TARGET_HINT = "give --key, --recipient or --recipients-file (who can decrypt?)"


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


def load_encryption_targets(
    key_path: str | os.PathLike[str] | None,
    recipients: Iterable[str] = (),
    recipient_files: Iterable[str | os.PathLike[str]] = (),
) -> tuple["SealingKey | None", list["Recipient"]]:
    """The site key (or keyring) and parsed recipients to seal for, checked before any file is touched.

    Raises KeyFileError (unreadable key, empty keyring 'encrypt' list, a recipient *private* key
    where the public string belongs), RecipientFormatError, InvalidInputError (too many stanzas,
    a recipient given twice, unreadable recipients file). Giving nothing is allowed here: whether
    that is an error is the command's call.
    """
    from dicomcrypt.crypto import KeyRing, Recipient, RecipientKey, load_secret

    parsed = [Recipient.parse(r) for r in recipient_strings(recipients, recipient_files)]
    if key_path is None:
        _check_stanza_count(0, parsed)
        return None, parsed
    path = Path(key_path)
    key = KeyRing.load(path) if path.suffix.lower() == ".toml" else load_secret(path)
    if isinstance(key, KeyRing) and not key.encrypt_to:
        raise KeyFileError(f"keyring {path}: its 'encrypt' list is empty, so it names nothing to encrypt for")
    if isinstance(key, RecipientKey):
        raise KeyFileError(
            f"{path} is a recipient private key; encrypt with its public recipient string "
            f"(dicomcrypt keygen --public {path})"
        )
    _check_stanza_count(len(key.encrypt_to) if isinstance(key, KeyRing) else 1, parsed)
    return key, parsed


def _check_stanza_count(keys: int, recipients: list["Recipient"]) -> None:
    """Refuse before any file is touched what every file would fail on (docs/format.md, Limits)."""
    from dicomcrypt.envelope import MAX_STANZAS

    if keys + len(recipients) > MAX_STANZAS:
        raise InvalidInputError(
            f"{keys + len(recipients)} keys and recipients: an envelope holds at most {MAX_STANZAS} key stanzas"
        )
    if len({r.key_id for r in recipients}) != len(recipients):
        raise InvalidInputError("the same recipient was given twice")
