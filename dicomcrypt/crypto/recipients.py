"""Public-key recipients: a receiving node's X25519 key pair, and HPKE wrapping of data keys.

A node that should be able to decrypt makes a key pair once (``dicomcrypt keygen --recipient``),
keeps the private half in a key file and hands out the public half as a short
**recipient string** (``dcrecip1...``, Bech32m with a checksum, so a typo is caught before any
file is encrypted to a key nobody holds). Senders then need no shared secret: each envelope's
data key is wrapped for the recipient with HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, AES-256-GCM, base mode), as age does with its X25519 recipients.

Key ids are derived from the public key, so an envelope names the recipient it was made for
without revealing anything. Formats and labels: ``docs/format.md``.

Only the standard library and ``cryptography`` are imported here.
"""

from __future__ import annotations

import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from dicomcrypt.crypto.keys import KEY_SIZE, PathLike, b64url, hkdf, read_key_file, utc_now, write_key_file
from dicomcrypt.errors import DecryptionError, KeyFileError, RecipientFormatError

__all__ = [
    "RECIPIENT_HRP",
    "RECIPIENT_KEY_FILE_PREFIX",
    "RECIPIENT_KEY_ID_LABEL",
    "HPKE_SUITE",
    "WRAPPED_SIZE",
    "Recipient",
    "RecipientKey",
]

RECIPIENT_HRP = "dcrecip"
"""Human-readable part of a recipient string: every recipient string starts ``dcrecip1``."""

RECIPIENT_KEY_FILE_PREFIX = "DICOMCRYPT-RECIPIENT-KEY-1"
"""First word of the key line of a recipient private key file (``1``: the file format version)."""

RECIPIENT_KEY_ID_LABEL = b"dicomcrypt/v2/recipient-key-id"
"""HKDF info for the 8-byte key id of a recipient, derived from its public key."""

HPKE_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
"""RFC 9180 ids: KEM 0x0020, KDF 0x0001, AEAD 0x0002; base mode (no PSK, no sender key)."""

WRAPPED_SIZE = 32 + KEY_SIZE + 16
"""A type-2 stanza body: the 32-byte encapsulated key ``enc``, then the data key sealed (+ tag)."""

_UNWRAP_FAILED = "recipient unwrap failed: wrong key, or the stanza was altered"


# -- Bech32m (BIP 350): the checksummed spelling of a public key ---------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_DATA_CHARS = 52  # 32 bytes in 5-bit groups
_CHECKSUM_CHARS = 6


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                check ^= gen
    return check


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data: bytes | list[int], src: int, dst: int, *, pad: bool) -> list[int] | None:
    """Bits regrouped from ``src``-bit to ``dst``-bit values; None if padding is not canonical."""
    acc = bits = 0
    out = []
    for value in data:
        acc = (acc << src) | value
        bits += src
        while bits >= dst:
            bits -= dst
            out.append((acc >> bits) & ((1 << dst) - 1))
    if pad and bits:
        out.append((acc << (dst - bits)) & ((1 << dst) - 1))
    elif not pad and (bits >= src or (acc << (dst - bits)) & ((1 << dst) - 1)):
        return None
    return out


def _bech32m_encode(hrp: str, payload: bytes) -> str:
    data = _regroup(payload, 8, 5, pad=True)
    assert data is not None
    polymod = _polymod(_hrp_expand(hrp) + data + [0] * _CHECKSUM_CHARS) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(_CHECKSUM_CHARS)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def _bech32m_decode_public_key(text: str) -> bytes:
    """The 32 public-key bytes of a recipient string; RecipientFormatError says what is wrong."""
    if not isinstance(text, str):
        raise TypeError("a recipient string is a str")
    where = _describe(text)
    expected = (
        f"expected '{RECIPIENT_HRP}1' and {_DATA_CHARS + _CHECKSUM_CHARS} more characters, "
        "as printed by 'dicomcrypt keygen --recipient'"
    )
    if text != text.strip() or any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise RecipientFormatError(f"{where}: contains spaces or characters outside printable ASCII; {expected}")
    if text.lower() != text and text.upper() != text:
        raise RecipientFormatError(f"{where}: mixes upper and lower case; {expected}")
    text = text.lower()
    hrp, sep, rest = text.rpartition("1")
    if not sep or hrp != RECIPIENT_HRP:
        raise RecipientFormatError(f"{where}: wrong prefix (not a dicomcrypt recipient); {expected}")
    if len(rest) != _DATA_CHARS + _CHECKSUM_CHARS:
        raise RecipientFormatError(
            f"{where}: wrong length ({len(rest)} characters after '{RECIPIENT_HRP}1'); {expected}"
        )
    bad = sorted({c for c in rest if c not in _CHARSET})
    if bad:
        raise RecipientFormatError(f"{where}: characters {''.join(bad)!r} are not in the Bech32 alphabet; {expected}")
    values = [_CHARSET.index(c) for c in rest]
    if _polymod(_hrp_expand(hrp) + values) != _BECH32M_CONST:
        raise RecipientFormatError(f"{where}: bad checksum (a typo or a truncated copy?); {expected}")
    data = _regroup(values[:-_CHECKSUM_CHARS], 5, 8, pad=False)
    if data is None or len(data) != 32:
        raise RecipientFormatError(f"{where}: does not encode a 32-byte key; {expected}")
    return bytes(data)


def _describe(text: str) -> str:
    """How an error names a would-be recipient string: shown only if it looks like one.

    Anything else may be a private key pasted by mistake, and key material never goes into a
    message.
    """
    if text.lower().startswith(RECIPIENT_HRP + "1") and len(text) <= 80:
        return f"recipient {text!r}"
    if text.startswith("DICOMCRYPT-"):
        return "recipient string (this looks like a key file's key line: never paste private keys)"
    return f"recipient string of {len(text)} characters (not shown: it does not start with '{RECIPIENT_HRP}1')"


# -- keys ----------------------------------------------------------------------------------------


def _checked_public_key(public_bytes: bytes, where: str) -> x25519.X25519PublicKey:
    """Refuse low-order points: HPKE's DH with them gives the all-zero secret (RFC 9180 7.1.4)."""
    public = x25519.X25519PublicKey.from_public_bytes(public_bytes)
    try:
        x25519.X25519PrivateKey.generate().exchange(public)
    except ValueError:
        raise RecipientFormatError(f"{where}: not a usable X25519 public key (low-order point)") from None
    return public


class Recipient:
    """A receiving node's public key: what a sender encrypts to. Not secret."""

    __slots__ = ("_public_bytes", "_public", "_key_id")

    def __init__(self, public_bytes: bytes, *, _where: str = "recipient") -> None:
        public_bytes = bytes(public_bytes)
        if len(public_bytes) != 32:
            raise RecipientFormatError(f"{_where}: an X25519 public key is 32 bytes, got {len(public_bytes)}")
        self._public = _checked_public_key(public_bytes, _where)
        self._public_bytes = public_bytes
        self._key_id = hkdf(public_bytes, RECIPIENT_KEY_ID_LABEL, 8).hex()

    @classmethod
    def parse(cls, text: str) -> Recipient:
        """A recipient from its ``dcrecip1...`` string (RecipientFormatError if malformed)."""
        public_bytes = _bech32m_decode_public_key(text)
        return cls(public_bytes, _where=_describe(text))

    @classmethod
    def from_bytes(cls, public_bytes: bytes) -> Recipient:
        return cls(public_bytes)

    @property
    def key_id(self) -> str:
        """16 lowercase hex characters, derived from the public key."""
        return self._key_id

    @property
    def public_bytes(self) -> bytes:
        return self._public_bytes

    def wrap(self, data_key: bytes, info: bytes) -> bytes:
        """HPKE-seal a 32-byte data key to this recipient, bound to ``info``: ``enc || ct``, 80 bytes.

        A fresh ephemeral key per call (RFC 9180 base mode), so two wraps never repeat.
        """
        if len(data_key) != KEY_SIZE:
            raise ValueError(f"a data key is {KEY_SIZE} bytes, got {len(data_key)}")
        return HPKE_SUITE.encrypt(bytes(data_key), self._public, info=bytes(info))

    def __str__(self) -> str:
        return _bech32m_encode(RECIPIENT_HRP, self._public_bytes)

    def __repr__(self) -> str:
        return f"Recipient({str(self)!r}, key_id={self._key_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recipient) and other._public_bytes == self._public_bytes

    def __hash__(self) -> int:
        return hash(self._public_bytes)

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        return (Recipient.from_bytes, (self._public_bytes,))


class RecipientKey:
    """A receiving node's private X25519 key: opens the stanzas made for its :class:`Recipient`.

    Like :class:`~dicomcrypt.crypto.keys.Key`, the secret stays inside: ``repr`` shows the key
    id and the public recipient string only.
    """

    __slots__ = ("_secret", "_private", "_recipient")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray, memoryview)):
            raise TypeError("a RecipientKey is made from bytes; use RecipientKey.generate() or .load(path)")
        secret = bytes(secret)
        if len(secret) != 32:
            raise KeyFileError(f"a recipient private key is exactly 32 bytes, got {len(secret)}")
        self._secret = secret
        self._private = x25519.X25519PrivateKey.from_private_bytes(secret)
        self._recipient = Recipient(self._private.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> RecipientKey:
        return cls(os.urandom(32))

    @classmethod
    def from_bytes(cls, secret: bytes) -> RecipientKey:
        return cls(secret)

    @classmethod
    def load(cls, path: PathLike) -> RecipientKey:
        """Read a recipient key file (docs/format.md); warns when others may read it."""
        return cls(read_key_file(path, RECIPIENT_KEY_FILE_PREFIX, "recipient key file"))

    def save(self, path: PathLike, *, force: bool = False) -> None:
        """Write the private key file: mode 0600 from creation, atomic, never clobbering without ``force``."""
        text = (
            "# dicomcrypt recipient private key: keep secret, never share; it decrypts files sent to\n"
            f"# recipient: {self.recipient}\n"
            f"# key id: {self.key_id}\n"
            f"# created: {utc_now()}\n"
            f"{RECIPIENT_KEY_FILE_PREFIX} {b64url(self._secret)}\n"
        )
        write_key_file(path, text, force=force, what="recipient key file")

    @property
    def recipient(self) -> Recipient:
        """The public half, to hand to senders."""
        return self._recipient

    @property
    def key_id(self) -> str:
        return self._recipient.key_id

    def unwrap(self, wrapped: bytes, info: bytes) -> bytes:
        """Inverse of :meth:`Recipient.wrap`; DecryptionError (no detail) if it does not open."""
        if len(wrapped) != WRAPPED_SIZE:
            raise DecryptionError(_UNWRAP_FAILED)
        try:
            data_key = HPKE_SUITE.decrypt(bytes(wrapped), self._private, info=bytes(info))
        except (InvalidTag, ValueError):
            raise DecryptionError(_UNWRAP_FAILED) from None
        if len(data_key) != KEY_SIZE:
            raise DecryptionError(_UNWRAP_FAILED)
        return data_key

    def __repr__(self) -> str:
        return f"RecipientKey(key_id={self.key_id!r}, recipient={str(self.recipient)!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecipientKey):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        # Lets worker processes receive keys (the CLI's process pool); the bytes go only there.
        return (RecipientKey.from_bytes, (self._secret,))
