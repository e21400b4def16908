"""Site keys and their key ids, and the key-file reader and writer every key kind shares.

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
from pathlib import Path
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from dicomcrypt.atomic import SECRET_MODE, write_atomic
from dicomcrypt.errors import DecryptionError, KeyFileError, OutputExistsError

__all__ = [
    "KEY_SIZE",
    "KEY_ID_LABEL",
    "KEK_LABEL",
    "KEY_FILE_PREFIX",
    "InsecureKeyFileWarning",
    "Key",
    "hkdf",
    "read_key_file",
    "write_key_file",
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

PathLike: TypeAlias = str | os.PathLike[str]


class InsecureKeyFileWarning(UserWarning):
    """A key file can be read by users other than its owner.

    Kept for callers that filter it; no longer raised: :func:`check_permissions` reports the
    problem once, as a log line (a warning and a log line of the same thing were shown twice)."""


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
        self._kek = hkdf(secret, KEK_LABEL, KEY_SIZE)
        self._key_id = hkdf(secret, KEY_ID_LABEL, _KEY_ID_SIZE).hex()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def generate(cls) -> Key:
        """A fresh key from the operating system's CSPRNG."""
        return cls(os.urandom(KEY_SIZE))

    @classmethod
    def from_bytes(cls, secret: bytes) -> Key:
        """A key from exactly 32 bytes (KeyFileError otherwise)."""
        return cls(secret)

    @classmethod
    def load(cls, path: PathLike) -> Key:
        """Read a key file (format in docs/format.md); KeyFileError names the path, never the content."""
        return cls(read_key_file(path, KEY_FILE_PREFIX, "key file"))

    # -- persistence --------------------------------------------------------------------

    def save(self, path: PathLike, *, force: bool = False) -> None:
        """Write the key file atomically, mode 0600 from creation; never clobber without ``force``."""
        write_key_file(path, self._file_text(), force=force, what="key file")

    def _file_text(self) -> str:
        return (
            "# dicomcrypt site key: keep secret, share only with peers that must decrypt\n"
            f"# key id: {self.key_id}\n"
            f"# created: {utc_now()}\n"
            f"{KEY_FILE_PREFIX} {b64url(self._secret)}\n"
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


# -- key file helpers (shared with crypto.recipients) ----------------------------------------


def hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 with no salt (RFC 5869: a string of zeros): one label per use."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)



def b64url(secret: bytes) -> str:
    """Base64url without padding: how key files spell 32 secret bytes (43 characters)."""
    return base64.urlsafe_b64encode(secret).rstrip(b"=").decode("ascii")


def utc_now() -> str:
    """The ``# created:`` timestamp of a new key file."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def expected_line(prefix: str) -> str:
    return f"one line '{prefix} <43 base64url characters, no padding>' plus optional '#' comment lines"


def key_file_prefix(path: PathLike) -> str | None:
    """The first word of a key file's key line (which kind of key it holds), or None.

    Used to tell site keys from recipient keys before parsing; never returns key material.
    """
    try:
        raw = Path(path).read_bytes()[:_MAX_KEY_FILE_BYTES]
        text = raw.decode("ascii")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.split()[0]
    return None


def read_key_file(path: PathLike, prefix: str, what: str) -> bytes:
    """The 32 secret bytes of a ``<prefix> <base64url>`` key file; KeyFileError names the path.

    Logs a warning when group or others may read the file. Messages say what was expected,
    never what was found.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path}: not found") from None
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise KeyFileError(f"{what} {path}: is a folder (KeyRing.load reads folders of *.key files)")
    if st.st_size > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(
            f"{what} {path}: {st.st_size} bytes is too large for a key file; expected {expected_line(prefix)}"
        )
    check_permissions(path, st.st_mode, what)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: cannot read ({exc.strerror})") from None
    return _parse_key_file(raw, path, prefix, what)


def write_key_file(path: PathLike, text: str, *, force: bool, what: str) -> None:
    """Write a secret file atomically, mode 0600 from creation; never clobber without ``force``.

    Losing a key loses every instance encrypted with it, so without ``force`` the final step
    is a hard link, which fails atomically if the name was taken meanwhile.
    """
    path = Path(path)
    try:
        write_atomic(path, text.encode("ascii"), force=force, mode=SECRET_MODE, make_parents=False,
                     exists_message=f"{what} {path} exists; pass force=True to overwrite it")
    except OutputExistsError:
        raise
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path}: cannot create in {path.parent} (no such folder)") from None
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: cannot write ({exc.strerror})") from None


def _parse_key_file(raw: bytes, path: Path, prefix: str = KEY_FILE_PREFIX, what: str = "key file") -> bytes:
    """The 32 key bytes of a key file; messages say what was expected, never what was found."""
    expected = expected_line(prefix)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{what} {path}: not ASCII text; expected {expected}") from None
    key_lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            key_lines.append(stripped)
    if len(key_lines) != 1:
        raise KeyFileError(f"{what} {path}: found {len(key_lines)} non-comment lines; expected {expected}")
    words = key_lines[0].split()
    if len(words) != 2 or words[0] != prefix:
        hint = _other_kind_hint(words[0] if words else "", prefix)
        raise KeyFileError(f"{what} {path}: the key line does not start with '{prefix} '{hint}; expected {expected}")
    encoded = words[1]
    if not _B64URL_43.fullmatch(encoded):
        raise KeyFileError(f"{what} {path}: the key is not 43 base64url characters; expected {expected}")
    try:
        secret = base64.urlsafe_b64decode(encoded + "=")
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{what} {path}: the key is not valid base64url; expected {expected}") from None
    if b64url(secret) != encoded:
        # 43 characters carry 258 bits; the last 2 must be zero, so each key has one spelling.
        raise KeyFileError(f"{what} {path}: the key is not canonical base64url; expected {expected}")
    return secret


_KIND_HINTS = {
    KEY_FILE_PREFIX: " (it is a site key file)",
    "DICOMCRYPT-RECIPIENT-KEY-1": (
        " (it is a recipient private key: use it to decrypt; encrypt with its public recipient string)"
    ),
}


def _other_kind_hint(found: str, wanted: str) -> str:
    """Say so when the file is a valid key file of the other kind (its prefix is not secret)."""
    return _KIND_HINTS.get(found, "") if found != wanted else ""


def check_permissions(path: Path, mode: int, what: str = "key file") -> None:
    """Log a warning when group or others may read a key file; POSIX only. A log line only, not a
    Python warning too: the user sees it once, in the command's or the service's log format."""
    if os.name != "posix" or not (mode & 0o077):
        return
    message = (
        f"{what} {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
        f"restrict it with: chmod 600 {path}"
    )
    logger.warning(message)

