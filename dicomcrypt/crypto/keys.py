"""Site keys, their key ids, and key rings.

A :class:`Key` is the 256-bit secret that a site shares with its peers (the paper's "shared key").
It is never used directly as a cipher key: HKDF-SHA256 derives from it, under distinct labels,
a public key id (so an envelope can say which key it needs without revealing it) and the
key-wrapping key (KEK) that wraps each envelope's fresh data key. The file format and the
labels are specified in ``docs/format.md``.

Only the standard library and ``cryptography`` are imported here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hmac
import logging
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Union

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from dicomcrypt.atomic import publish
from dicomcrypt.errors import DecryptionError, KeyFileError, OutputExistsError

__all__ = [
    "KEY_SIZE",
    "KEY_ID_LABEL",
    "KEK_LABEL",
    "KEY_FILE_PREFIX",
    "InsecureKeyFileWarning",
    "Key",
    "KeyRing",
]

logger = logging.getLogger(__name__)

KEY_SIZE = 32
"""Bytes in a site key (AES-256)."""

KEY_ID_LABEL = b"dicomcrypt/v1/key-id"
"""HKDF info for the 8-byte key id."""

KEK_LABEL = b"dicomcrypt/v1/kek"
"""HKDF info for the key-wrapping key."""

KEY_FILE_PREFIX = "DICOMCRYPT-KEY-1"
"""First word of the one non-comment line of a key file (the ``1`` is the file format version)."""

_KEY_ID_SIZE = 8
_UNWRAP_FAILED = "key unwrap failed: wrong key, or the wrapped key was altered"
_MAX_KEY_FILE_BYTES = 64 * 1024  # a key file is ~200 bytes; refuse to slurp something else
_B64URL_43 = re.compile(r"[A-Za-z0-9_-]{43}")
_EXPECTED_LINE = f"one line '{KEY_FILE_PREFIX} <43 base64url characters, no padding>' plus optional '#' comment lines"

PathLike = Union[str, os.PathLike[str]]


class InsecureKeyFileWarning(UserWarning):
    """A key file can be read by users other than its owner."""


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 with no salt (RFC 5869: a string of zeros): one label per use."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


class Key:
    """A 256-bit symmetric site key.

    The secret bytes stay inside the object: ``repr`` and ``str`` show only the key id, and the
    operations envelopes need (wrapping a data key) are methods, so callers never handle the KEK.
    """

    __slots__ = ("_secret", "_kek", "_key_id")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray, memoryview)):
            raise TypeError("a Key is made from bytes; use Key.generate() or Key.load(path)")
        secret = bytes(secret)
        if len(secret) != KEY_SIZE:
            raise KeyFileError(f"a site key is exactly {KEY_SIZE} bytes, got {len(secret)}")
        self._secret = secret
        self._kek = _hkdf(secret, KEK_LABEL, KEY_SIZE)
        self._key_id = _hkdf(secret, KEY_ID_LABEL, _KEY_ID_SIZE).hex()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def generate(cls) -> "Key":
        """A fresh key from the operating system's CSPRNG."""
        return cls(os.urandom(KEY_SIZE))

    @classmethod
    def from_bytes(cls, secret: bytes) -> "Key":
        """A key from exactly 32 bytes (KeyFileError otherwise)."""
        return cls(secret)

    @classmethod
    def load(cls, path: PathLike) -> "Key":
        """Read a key file (format in docs/format.md); KeyFileError names the path, never the content."""
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise KeyFileError(f"key file {path}: not found") from None
        except OSError as exc:
            raise KeyFileError(f"key file {path}: cannot read ({exc.strerror})") from None
        if stat.S_ISDIR(st.st_mode):
            raise KeyFileError(f"key file {path}: is a folder (KeyRing.load reads folders of *.key files)")
        if st.st_size > _MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"key file {path}: {st.st_size} bytes is too large for a key file; expected {_EXPECTED_LINE}")
        _check_permissions(path, st.st_mode)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"key file {path}: cannot read ({exc.strerror})") from None
        return cls(_parse_key_file(raw, path))

    # -- persistence --------------------------------------------------------------------

    def save(self, path: PathLike, *, force: bool = False) -> None:
        """Write the key file atomically, mode 0600 from creation; never clobber without ``force``.

        Losing a key loses every instance encrypted with it, so without ``force`` the final step
        is a hard link, which fails atomically if the name was taken meanwhile.
        """
        path = Path(path)
        if not force and os.path.lexists(path):
            raise OutputExistsError(f"key file {path} exists; pass force=True to overwrite it")
        directory = path.parent
        tmp = directory / f".{path.name}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        except OSError as exc:
            raise KeyFileError(f"key file {path}: cannot create in {directory} ({exc.strerror})") from None
        try:
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)  # exact, whatever the umask
                os.write(fd, self._file_text().encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            publish(tmp, path, force=force, exists_message=f"key file {path} exists; pass force=True to overwrite it")
        except OutputExistsError:
            raise
        except OSError as exc:
            raise KeyFileError(f"key file {path}: cannot write ({exc.strerror})") from None
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def _file_text(self) -> str:
        created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        encoded = base64.urlsafe_b64encode(self._secret).rstrip(b"=").decode("ascii")
        return (
            "# dicomcrypt site key: keep secret, share only with peers that must decrypt\n"
            f"# key id: {self.key_id}\n"
            f"# created: {created}\n"
            f"{KEY_FILE_PREFIX} {encoded}\n"
        )

    # -- what envelopes need ------------------------------------------------------------

    @property
    def key_id(self) -> str:
        """16 lowercase hex characters; public, and reveals nothing about the key."""
        return self._key_id

    @property
    def key_id_bytes(self) -> bytes:
        """The key id as the 8 bytes written into an envelope's key stanza."""
        return bytes.fromhex(self._key_id)

    def wrap(self, data_key: bytes) -> bytes:
        """AES-KW (RFC 3394) of a 32-byte data key under this key's KEK: 40 bytes."""
        if len(data_key) != KEY_SIZE:
            raise ValueError(f"a data key is {KEY_SIZE} bytes, got {len(data_key)}")
        return aes_key_wrap(self._kek, bytes(data_key))

    def unwrap(self, wrapped: bytes) -> bytes:
        """Inverse of :meth:`wrap`; DecryptionError (no detail) if the wrap does not authenticate."""
        try:
            data_key = aes_key_unwrap(self._kek, bytes(wrapped))
        except (InvalidUnwrap, ValueError):
            raise DecryptionError(_UNWRAP_FAILED) from None  # open_envelope replaces this message
        if len(data_key) != KEY_SIZE:
            raise DecryptionError(_UNWRAP_FAILED) from None
        return data_key

    # -- object protocol ----------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Key(key_id={self._key_id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self._key_id)

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        # Lets worker processes receive keys (the CLI's process pool); the bytes go only there.
        return (Key.from_bytes, (self._secret,))


class KeyRing:
    """Keys by key id: what a receiver holds, so an envelope can pick the key it names."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        self._keys: dict[str, Key] = {}
        for key in keys:
            if not isinstance(key, Key):
                raise TypeError(f"KeyRing holds Key objects, got {type(key).__name__}")
            self._keys.setdefault(key.key_id, key)

    @classmethod
    def load(cls, paths: PathLike | Iterable[PathLike]) -> "KeyRing":
        """Key files and folders of ``*.key`` files (not recursive), in the order given."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        keys: list[Key] = []
        for entry in paths:
            path = Path(entry)
            if path.is_dir():
                files = sorted(p for p in path.glob("*.key") if p.is_file())
                if not files:
                    raise KeyFileError(f"key folder {path}: holds no *.key files")
                keys.extend(Key.load(p) for p in files)
            else:
                keys.append(Key.load(path))
        return cls(keys)

    def get(self, key_id: str) -> Key | None:
        """The key with this id, or None."""
        return self._keys.get(key_id)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of the keys held, in the order they were added."""
        return tuple(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Key):
            return self._keys.get(item.key_id) == item
        return item in self._keys

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys.values())

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self._keys)!r})"


# -- key file helpers ----------------------------------------------------------------------


def _parse_key_file(raw: bytes, path: Path) -> bytes:
    """The 32 key bytes of a key file; messages say what was expected, never what was found."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"key file {path}: not ASCII text; expected {_EXPECTED_LINE}") from None
    key_lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            key_lines.append(stripped)
    if len(key_lines) != 1:
        raise KeyFileError(f"key file {path}: found {len(key_lines)} non-comment lines; expected {_EXPECTED_LINE}")
    words = key_lines[0].split()
    if len(words) != 2 or words[0] != KEY_FILE_PREFIX:
        raise KeyFileError(f"key file {path}: the key line does not start with '{KEY_FILE_PREFIX} '; expected {_EXPECTED_LINE}")
    encoded = words[1]
    if not _B64URL_43.fullmatch(encoded):
        raise KeyFileError(f"key file {path}: the key is not 43 base64url characters; expected {_EXPECTED_LINE}")
    try:
        secret = base64.urlsafe_b64decode(encoded + "=")
    except (binascii.Error, ValueError):
        raise KeyFileError(f"key file {path}: the key is not valid base64url; expected {_EXPECTED_LINE}") from None
    if base64.urlsafe_b64encode(secret).rstrip(b"=").decode("ascii") != encoded:
        # 43 characters carry 258 bits; the last 2 must be zero, so each key has one spelling.
        raise KeyFileError(f"key file {path}: the key is not canonical base64url; expected {_EXPECTED_LINE}")
    return secret


def _check_permissions(path: Path, mode: int) -> None:
    """Warn (and log) when group or others may read a key file; POSIX only."""
    if os.name != "posix" or not (mode & 0o077):
        return
    message = (
        f"key file {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
        f"restrict it with: chmod 600 {path}"
    )
    logger.warning(message)
    warnings.warn(message, InsecureKeyFileWarning, stacklevel=3)


