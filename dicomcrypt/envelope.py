"""The envelope: the versioned binary container that carries one encrypted payload.

Each envelope has its own random data key and nonce; the data key is wrapped for one or more
site keys in "key stanzas" (age's recipient stanzas), and AES-256-GCM authenticates the whole
clear header plus a caller-supplied ``binding`` (the instance's UIDs), so nothing an attacker
could swap or edit goes unnoticed. The byte layout, labels and numbered steps are specified in
``docs/format.md``; ``tests/vectors/envelope.json`` holds the known answers.

Parsing happens before any secret is involved, so parse errors say exactly what is wrong
(:class:`EnvelopeFormatError`); every failure after that is one constant
:class:`DecryptionError`, like Fernet's ``InvalidToken``.

Only the standard library and ``cryptography`` are imported here.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dicomcrypt.crypto.keys import KEY_SIZE, Key, KeyRing
from dicomcrypt.errors import DecryptionError, EnvelopeFormatError, KeyNotFoundError

__all__ = [
    "MAGIC",
    "VERSION",
    "MAX_STANZAS",
    "DECRYPTION_FAILED",
    "Mode",
    "Suite",
    "StanzaType",
    "Stanza",
    "EnvelopeHeader",
    "seal",
    "open_envelope",
    "read_header",
    "instance_binding",
]

MAGIC = b"DCEV"
"""First four bytes of every envelope ("DicomCrypt EnVelope")."""

VERSION = 1
"""The only envelope version this code reads and writes."""

MAX_STANZAS = 16
"""Most key stanzas an envelope may carry (bounds the work an untrusted envelope can cause)."""

MAX_MODEL_ID_BYTES = 255
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_ID_SIZE = 8
WRAPPED_KEY_SIZE = KEY_SIZE + 8  # RFC 3394 adds one 64-bit block
MAX_PLAINTEXT = 2**36 - 32  # AES-GCM's limit for one (key, nonce): 2**39 - 256 bits

DECRYPTION_FAILED = DecryptionError.MESSAGE
"""The one message of every DecryptionError raised by :func:`open_envelope`."""

BINDING_LABEL = b"dicomcrypt/v1/instance-binding"


class Mode(enum.IntEnum):
    """How the payload was made (see docs/architecture.md, "Modes")."""

    LOSSLESS = 1
    LOSSY = 2
    STANDARD = 3


class Suite(enum.IntEnum):
    """Cipher suite: which AEAD and which key wrap."""

    AES256GCM_AESKW = 1  # AES-256-GCM, data key wrapped with AES-KW (RFC 3394)


class StanzaType(enum.IntEnum):
    """Kinds of key stanza. 0 is reserved; 2 is set aside for HPKE X25519 recipients."""

    AES_KW = 1  # data key wrapped with the KEK derived from a symmetric site key


_SUPPORTED_STANZAS = frozenset({StanzaType.AES_KW})


@dataclass(frozen=True)
class Stanza:
    """One wrapped copy of the data key, for the key named by ``key_id``."""

    type: int
    key_id: str  # 16 lowercase hex characters
    body: bytes


@dataclass(frozen=True)
class EnvelopeHeader:
    """Everything in clear before the ciphertext; readable without a key (``dicomcrypt inspect``)."""

    version: int
    suite: Suite
    mode: Mode
    model_id: str
    model_sha256: bytes
    key_ids: tuple[str, ...]
    nonce: bytes
    ciphertext_length: int  # ciphertext plus the 16-byte tag
    header_length: int  # bytes before the ciphertext: the header part of the associated data
    stanzas: tuple[Stanza, ...] = ()


# -- packing ---------------------------------------------------------------------------------

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


def _pack_header(
    *, mode: Mode, model_id: bytes, model_sha256: bytes, stanzas: Sequence[Stanza], nonce: bytes, ciphertext_length: int
) -> bytes:
    """The clear header, field by field, in the order of the table in docs/format.md."""
    parts = [MAGIC, _U8.pack(VERSION), _U8.pack(Suite.AES256GCM_AESKW), _U8.pack(mode)]
    parts += [_U8.pack(len(model_id)), model_id, model_sha256]
    parts.append(_U8.pack(len(stanzas)))
    for stanza in stanzas:
        parts += [_U8.pack(stanza.type), bytes.fromhex(stanza.key_id), _U16.pack(len(stanza.body)), stanza.body]
    parts += [nonce, _U64.pack(ciphertext_length)]
    return b"".join(parts)


def _check_model(mode: Mode, model_id: str, model_sha256: bytes) -> bytes:
    """The model id as bytes, after the writer's checks (the reader applies the same ones)."""
    if not isinstance(model_id, str):
        raise TypeError("model_id is a str")
    encoded = model_id.encode("utf-8")
    if len(encoded) > MAX_MODEL_ID_BYTES:
        raise ValueError(f"model id is {len(encoded)} bytes in UTF-8; at most {MAX_MODEL_ID_BYTES}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in model_id):
        raise ValueError("model id contains control characters")
    if not isinstance(model_sha256, (bytes, bytearray)) or len(model_sha256) != 32:
        raise ValueError("model_sha256 is 32 bytes (all zeros when there is no model)")
    problem = _model_inconsistency(mode, model_id, bytes(model_sha256))
    if problem:
        raise ValueError(problem)
    return encoded


def _model_inconsistency(mode: Mode, model_id: str, model_sha256: bytes) -> str | None:
    """Why a mode and its model fields disagree, or None."""
    if mode is Mode.STANDARD and (model_id or any(model_sha256)):
        return "standard mode uses no model: model id must be empty and model SHA-256 all zeros"
    if mode is not Mode.STANDARD and not model_id:
        return f"{mode.name.lower()} mode needs a model id"
    return None


def seal(plaintext: bytes, *, key: Key, mode: Mode | int, model_id: str, model_sha256: bytes, binding: bytes) -> bytes:
    """Encrypt ``plaintext`` (the payload) for ``key``, bound to ``binding``.

    A fresh random data key and nonce per call, so no (key, nonce) pair can ever repeat.
    """
    return _seal_deterministic(
        plaintext,
        keys=[key],
        mode=mode,
        model_id=model_id,
        model_sha256=model_sha256,
        binding=binding,
        data_key=os.urandom(KEY_SIZE),
        nonce=os.urandom(NONCE_SIZE),
    )


def _seal_deterministic(
    plaintext: bytes,
    *,
    keys: Sequence[Key],
    mode: Mode | int,
    model_id: str,
    model_sha256: bytes,
    binding: bytes,
    data_key: bytes,
    nonce: bytes,
) -> bytes:
    """:func:`seal` with the random parts given: for seal itself and the known-answer tests only.

    Never call this with a data key or nonce that was used before.
    """
    mode = Mode(mode)
    encoded_model_id = _check_model(mode, model_id, model_sha256)
    if not isinstance(binding, (bytes, bytearray)):
        raise TypeError("binding is bytes (see instance_binding)")
    if len(data_key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError(f"data key is {KEY_SIZE} bytes and nonce {NONCE_SIZE}")
    keys = list(keys)
    if not all(isinstance(k, Key) for k in keys):
        raise TypeError("seal needs a dicomcrypt.crypto.Key")
    if not 1 <= len(keys) <= MAX_STANZAS:
        raise ValueError(f"an envelope is sealed for 1 to {MAX_STANZAS} keys, got {len(keys)}")
    if len({k.key_id for k in keys}) != len(keys):
        raise ValueError("the same key was given twice")
    plaintext = bytes(plaintext)
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"plaintext of {len(plaintext)} bytes exceeds the AES-GCM limit of {MAX_PLAINTEXT}")

    stanzas = [Stanza(StanzaType.AES_KW, k.key_id, k.wrap(data_key)) for k in keys]
    header = _pack_header(
        mode=mode,
        model_id=encoded_model_id,
        model_sha256=bytes(model_sha256),
        stanzas=stanzas,
        nonce=bytes(nonce),
        ciphertext_length=len(plaintext) + TAG_SIZE,
    )
    ciphertext = AESGCM(bytes(data_key)).encrypt(bytes(nonce), plaintext, header + bytes(binding))
    return header + ciphertext


# -- parsing ---------------------------------------------------------------------------------


class _Reader:
    """Reads fields front to back; any shortfall is an EnvelopeFormatError naming the field."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        left = len(self.blob) - self.pos
        if n > left:
            raise EnvelopeFormatError(
                f"envelope truncated: {what} needs {n} bytes at offset {self.pos}, only {left} left"
            )
        out = self.blob[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: struct.Struct, what: str) -> int:
        return fmt.unpack(self.take(fmt.size, what))[0]


def _read_preamble(r: _Reader) -> tuple[int, Suite, Mode]:
    """Magic, version, suite, mode: refused as soon as one is unknown."""
    magic = r.take(len(MAGIC), "magic")
    if magic != MAGIC:
        raise EnvelopeFormatError("not a dicomcrypt envelope: bad magic (expected 'DCEV')")
    version = r.unpack(_U8, "version")
    if version != VERSION:
        raise EnvelopeFormatError(f"unsupported envelope version {version} (this dicomcrypt reads version {VERSION})")
    suite = r.unpack(_U8, "suite")
    if suite not in Suite._value2member_map_:
        raise EnvelopeFormatError(f"unknown cipher suite {suite}")
    mode = r.unpack(_U8, "mode")
    if mode not in Mode._value2member_map_:
        raise EnvelopeFormatError(f"unknown mode {mode}")
    return version, Suite(suite), Mode(mode)


def _read_model(r: _Reader, mode: Mode) -> tuple[str, bytes]:
    """Model id (UTF-8, no control characters) and model SHA-256, consistent with the mode."""
    raw = r.take(r.unpack(_U8, "model id length"), "model id")
    try:
        model_id = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeFormatError("model id is not valid UTF-8") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in model_id):
        raise EnvelopeFormatError("model id contains control characters")
    sha = r.take(32, "model SHA-256")
    problem = _model_inconsistency(mode, model_id, sha)
    if problem:
        raise EnvelopeFormatError(problem)
    return model_id, sha


def _read_stanzas(r: _Reader) -> tuple[Stanza, ...]:
    """The key stanzas: count capped, known types checked, unknown types kept for skipping."""
    count = r.unpack(_U8, "stanza count")
    if count == 0:
        raise EnvelopeFormatError("envelope has no key stanzas")
    if count > MAX_STANZAS:
        raise EnvelopeFormatError(f"too many key stanzas: {count} (at most {MAX_STANZAS})")
    stanzas = []
    for i in range(count):
        kind = r.unpack(_U8, f"stanza {i} type")
        if kind == 0:
            raise EnvelopeFormatError(f"stanza {i} has the reserved type 0")
        key_id = r.take(KEY_ID_SIZE, f"stanza {i} key id").hex()
        body = r.take(r.unpack(_U16, f"stanza {i} body length"), f"stanza {i} body")
        if kind == StanzaType.AES_KW and len(body) != WRAPPED_KEY_SIZE:
            raise EnvelopeFormatError(f"stanza {i}: an AES-KW body is {WRAPPED_KEY_SIZE} bytes, not {len(body)}")
        stanzas.append(Stanza(kind, key_id, body))
    if len({s.key_id for s in stanzas}) != count:
        raise EnvelopeFormatError("two key stanzas name the same key id")
    return tuple(stanzas)


def _read_tail(r: _Reader) -> tuple[bytes, int]:
    """Nonce and ciphertext length; the ciphertext must fill the rest of the blob exactly."""
    nonce = r.take(NONCE_SIZE, "nonce")
    length = r.unpack(_U64, "ciphertext length")
    if length < TAG_SIZE:
        raise EnvelopeFormatError(f"ciphertext length {length} is shorter than the {TAG_SIZE}-byte tag")
    if length > MAX_PLAINTEXT + TAG_SIZE:
        raise EnvelopeFormatError(f"ciphertext length {length} exceeds the AES-GCM limit")
    left = len(r.blob) - r.pos
    if left < length:
        raise EnvelopeFormatError(f"envelope truncated: ciphertext needs {length} bytes, only {left} left")
    if left > length:
        raise EnvelopeFormatError(f"{left - length} trailing bytes after the ciphertext")
    return nonce, length


def read_header(blob: bytes) -> EnvelopeHeader:
    """Parse and check the whole envelope's structure without a key (for ``inspect`` and open)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError("an envelope is bytes")
    r = _Reader(bytes(blob))
    version, suite, mode = _read_preamble(r)
    model_id, model_sha256 = _read_model(r, mode)
    stanzas = _read_stanzas(r)
    nonce, length = _read_tail(r)
    return EnvelopeHeader(
        version=version,
        suite=suite,
        mode=mode,
        model_id=model_id,
        model_sha256=model_sha256,
        key_ids=tuple(s.key_id for s in stanzas),
        nonce=nonce,
        ciphertext_length=length,
        header_length=r.pos,
        stanzas=stanzas,
    )


# -- opening ---------------------------------------------------------------------------------


def _as_ring(keys: KeyRing | Key | Iterable[Key]) -> KeyRing:
    if isinstance(keys, KeyRing):
        return keys
    if isinstance(keys, Key):
        return KeyRing([keys])
    return KeyRing(keys)


def _choose_stanza(header: EnvelopeHeader, ring: KeyRing) -> tuple[Stanza, Key]:
    """The first stanza this code can use with a key we hold; KeyNotFoundError names what is needed."""
    for stanza in header.stanzas:
        key = ring.get(stanza.key_id)
        if key is not None and stanza.type in _SUPPORTED_STANZAS:
            return stanza, key
    for stanza in header.stanzas:
        if stanza.key_id in ring:
            raise EnvelopeFormatError(
                f"the stanza for key id {stanza.key_id} has type {stanza.type}, which this version cannot use"
            )
    raise KeyNotFoundError(list(header.key_ids), ring.key_ids)


def open_envelope(blob: bytes, *, keys: KeyRing | Key | Iterable[Key], binding: bytes) -> tuple[EnvelopeHeader, bytes]:
    """Authenticate and decrypt; returns the header and the plaintext (the payload).

    Raises EnvelopeFormatError (malformed), KeyNotFoundError (no key for any stanza) or
    DecryptionError with the one message :data:`DECRYPTION_FAILED` for every other failure.
    """
    header = read_header(blob)
    blob = bytes(blob)
    if not isinstance(binding, (bytes, bytearray)):
        raise TypeError("binding is bytes (see instance_binding)")
    stanza, key = _choose_stanza(header, _as_ring(keys))
    try:
        data_key = key.unwrap(stanza.body)
        plaintext = AESGCM(data_key).decrypt(
            header.nonce, blob[header.header_length :], blob[: header.header_length] + bytes(binding)
        )
    except (DecryptionError, InvalidTag):
        raise DecryptionError(DECRYPTION_FAILED) from None
    return header, plaintext


# -- binding ---------------------------------------------------------------------------------


def _canonical_uid(name: str, value: str) -> bytes:
    """DICOM padding (trailing NUL, surrounding spaces) is not significant, so it is not bound."""
    if not isinstance(value, str):
        raise TypeError(f"{name} is a str, got {type(value).__name__}")
    value = value.rstrip("\x00").strip(" ")
    try:
        encoded = value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not ASCII") from None
    if len(encoded) > 0xFFFF:
        raise ValueError(f"{name} is longer than 65535 bytes")
    return encoded


def instance_binding(sop_class_uid: str, sop_instance_uid: str, study_uid: str, series_uid: str) -> bytes:
    """The canonical bytes of an instance's identity, bound to its envelope as associated data.

    Label, then each UID as a 2-byte big-endian length and its ASCII bytes, in argument order;
    an envelope moved to another instance, or whose UIDs were edited, then fails to open.
    """
    parts = [_U8.pack(len(BINDING_LABEL)), BINDING_LABEL]
    for name, value in (
        ("sop_class_uid", sop_class_uid),
        ("sop_instance_uid", sop_instance_uid),
        ("study_uid", study_uid),
        ("series_uid", series_uid),
    ):
        encoded = _canonical_uid(name, value)
        parts += [_U16.pack(len(encoded)), encoded]
    return b"".join(parts)
