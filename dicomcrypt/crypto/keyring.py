"""Key rings: every secret a receiver holds, by key id, and what a sender currently seals for.

A ring holds site keys (:class:`~dicomcrypt.crypto.keys.Key`) and recipient private keys
(:class:`~dicomcrypt.crypto.recipients.RecipientKey`); an envelope names key ids, and the ring
answers with the secret for one of them. Rotation is a keyring file (TOML) that separates the
**current** encryption targets from keys kept only to read older files::

    # /etc/dicomcrypt/keyring.toml (paths relative to this file)
    encrypt = ["site-2027.key", "dcrecip1..."]   # new envelopes are sealed for these
    decrypt = ["site-2026.key", "old-keys/", "node.key"]   # decrypt-only

Every secret listed under either name decrypts; only ``encrypt`` entries are used to encrypt.
Details: ``docs/format.md`` ("Keyring file").
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeAlias

from dicomcrypt.crypto.keys import Key, PathLike, key_file_prefix
from dicomcrypt.crypto.recipients import RECIPIENT_HRP, RECIPIENT_KEY_FILE_PREFIX, Recipient, RecipientKey
from dicomcrypt.errors import KeyFileError, KeyRingError

__all__ = ["Secret", "Target", "KeyRing", "load_secret", "parse_target"]

Secret: TypeAlias = Key | RecipientKey
"""What opens a key stanza."""
Target: TypeAlias = Key | Recipient
"""What a key stanza is made for."""

KEYRING_SUFFIX = ".toml"
_KEYRING_FIELDS = ("encrypt", "decrypt")


def load_secret(path: PathLike) -> Secret:
    """A site key or a recipient private key file, told apart by its key line's first word."""
    if key_file_prefix(path) == RECIPIENT_KEY_FILE_PREFIX:
        return RecipientKey.load(path)
    return Key.load(path)


def parse_target(entry: str, base: Path | None = None) -> tuple[Target, Secret | None]:
    """A recipient string, or a key file path (relative to ``base``): the target, and its secret if any.

    A recipient private key file as a target means "seal for its public half".
    """
    if entry.lower().startswith(RECIPIENT_HRP + "1"):
        return Recipient.parse(entry), None
    _refuse_key_line(entry)
    path = Path(entry) if base is None or Path(entry).is_absolute() else base / entry
    secret = load_secret(path)
    return (secret.recipient if isinstance(secret, RecipientKey) else secret), secret


def _refuse_key_line(entry: str) -> None:
    """A key file's content where a path belongs: refused without echoing it (it is a secret)."""
    if entry.strip().startswith("DICOMCRYPT-"):
        raise KeyRingError("a key line was given where a key file path or a recipient string belongs; "
                           "never paste private keys: list the key file's path instead")


class KeyRing:
    """Secrets by key id (what a receiver holds), plus the current encryption targets, if any."""

    __slots__ = ("_keys", "_encrypt_to")

    def __init__(self, keys: Iterable[Secret] = (), *, encrypt_to: Iterable[Target] = ()) -> None:
        self._keys: dict[str, Secret] = {}
        for key in keys:
            if not isinstance(key, (Key, RecipientKey)):
                raise TypeError(f"KeyRing holds Key and RecipientKey objects, got {type(key).__name__}")
            self._keys.setdefault(key.key_id, key)
        targets: dict[str, Target] = {}
        for target in encrypt_to:
            if not isinstance(target, (Key, Recipient)):
                raise TypeError(f"encryption targets are Key and Recipient objects, got {type(target).__name__}")
            targets.setdefault(target.key_id, target)
        self._encrypt_to = tuple(targets.values())

    @classmethod
    def load(cls, paths: PathLike | Iterable[PathLike]) -> KeyRing:
        """Key files (either kind), folders of ``*.key`` files (not recursive) and ``*.toml`` keyrings."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        keys: list[Secret] = []
        targets: list[Target] = []
        for entry in paths:
            path = Path(entry)
            if path.suffix.lower() == KEYRING_SUFFIX and path.is_file():
                ring = _load_keyring_file(path)
                keys.extend(ring)
                targets.extend(ring.encrypt_to)
            else:
                keys.extend(_load_files(path))
        return cls(keys, encrypt_to=targets)

    def get(self, key_id: str) -> Secret | None:
        """The secret with this id, or None."""
        return self._keys.get(key_id)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of the secrets held, in the order they were added."""
        return tuple(self._keys)

    @property
    def encrypt_to(self) -> tuple[Target, ...]:
        """What new envelopes are sealed for (a keyring file's ``encrypt``); empty for plain key lists."""
        return self._encrypt_to

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, (Key, RecipientKey)):
            return self._keys.get(item.key_id) == item
        return item in self._keys

    def __iter__(self) -> Iterator[Secret]:
        return iter(self._keys.values())

    def __repr__(self) -> str:
        extra = f", encrypt_to={[t.key_id for t in self._encrypt_to]!r}" if self._encrypt_to else ""
        return f"KeyRing(key_ids={list(self._keys)!r}{extra})"

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (_rebuild, (tuple(self._keys.values()), self._encrypt_to))


def _rebuild(keys: tuple[Secret, ...], targets: tuple[Target, ...]) -> KeyRing:
    return KeyRing(keys, encrypt_to=targets)


def _load_files(path: Path) -> list[Secret]:
    """One key file, or every ``*.key`` file of a folder."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.key") if p.is_file())
        if not files:
            raise KeyFileError(f"key folder {path}: holds no *.key files")
        return [load_secret(p) for p in files]
    return [load_secret(path)]


def _load_keyring_file(path: Path) -> KeyRing:
    """A TOML keyring: ``encrypt`` (current targets) and ``decrypt`` (decrypt-only secrets)."""
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise KeyRingError(f"keyring {path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise KeyRingError(f"keyring {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(document) - set(_KEYRING_FIELDS))
    if unknown:
        raise KeyRingError(
            f"keyring {path}: unknown setting {', '.join(unknown)}; expected only {' and '.join(_KEYRING_FIELDS)}"
        )
    lists = {}
    for name in _KEYRING_FIELDS:
        value = document.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise KeyRingError(
                f"keyring {path}: '{name}' must be a list of non-empty strings (paths or recipient strings)"
            )
        lists[name] = value
    if not lists["encrypt"] and not lists["decrypt"]:
        raise KeyRingError(f"keyring {path}: lists no keys (expected 'encrypt' and/or 'decrypt')")
    base = path.parent
    keys: list[Secret] = []
    targets: list[Target] = []
    for entry in lists["encrypt"]:
        target, secret = parse_target(entry, base)
        targets.append(target)
        if secret is not None:
            keys.append(secret)
    for entry in lists["decrypt"]:
        if entry.lower().startswith(RECIPIENT_HRP + "1"):
            raise KeyRingError(
                f"keyring {path}: 'decrypt' lists a public recipient string; it needs the recipient's private key file"
            )
        _refuse_key_line(entry)
        entry_path = Path(entry) if Path(entry).is_absolute() else base / entry
        keys.extend(_load_files(entry_path))
    return KeyRing(keys, encrypt_to=targets)
