"""The envelope: the versioned binary container that carries one encrypted payload.

Each envelope has its own random data key and nonce; the data key is wrapped for one or more
site keys or public-key recipients in "key stanzas" (age's recipient stanzas). Version 2 (what
this code writes) derives the payload key and a **key commitment** from the data key and
authenticates everything in the header *except* the stanzas, plus a caller-supplied
``binding`` (the instance's UIDs), as AES-256-GCM associated data. Leaving the stanzas out is
what lets :func:`rewrap` give a file new keys without touching its ciphertext; the commitment
(checked before the payload is opened) is what keeps that sound: a stanza can only ever yield
the one data key the header commits to, so two recipients cannot be shown two different
plaintexts, and a swapped or forged stanza fails. Version 1 envelopes (stanzas inside the
associated data, no commitment) are still read. Byte layout, labels and numbered steps:
``docs/format.md``; known answers: ``tests/vectors/envelope.json``.

Parsing happens before any secret is involved, so parse errors say exactly what is wrong
(:class:`EnvelopeFormatError`); every failure after that is one constant
:class:`DecryptionError`, like Fernet's ``InvalidToken``.

Only the standard library and ``cryptography`` are imported here.
"""

from __future__ import annotations

import enum
import hmac
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dicomcrypt.crypto.keyring import KeyRing, Secret, Target
from dicomcrypt.crypto.keys import KEY_SIZE, Key, hkdf
from dicomcrypt.crypto.recipients import WRAPPED_SIZE as HPKE_WRAPPED_SIZE
from dicomcrypt.crypto.recipients import Recipient, RecipientKey
from dicomcrypt.errors import DecryptionError, EnvelopeFormatError, KeyNotFoundError

__all__ = [
    "MAGIC",
    "VERSION",
    "READ_VERSIONS",
    "MAX_STANZAS",
    "DECRYPTION_FAILED",
    "Mode",
    "Suite",
    "StanzaType",
    "Stanza",
    "EnvelopeHeader",
    "seal",
    "open_envelope",
    "rewrap",
    "read_header",
    "instance_binding",
]

MAGIC = b"DCEV"
"""First four bytes of every envelope ("DicomCrypt EnVelope")."""

VERSION = 2
"""The envelope version this code writes."""

READ_VERSIONS = (1, 2)
"""Versions this code reads."""

MAX_STANZAS = 16
"""Most key stanzas an envelope may carry (bounds the work an untrusted envelope can cause)."""

MAX_MODEL_ID_BYTES = 255
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_ID_SIZE = 8
COMMITMENT_SIZE = 32
WRAPPED_KEY_SIZE = KEY_SIZE + 8  # RFC 3394 adds one 64-bit block
MAX_PLAINTEXT = 2**36 - 32  # AES-GCM's limit for one (key, nonce): 2**39 - 256 bits

DECRYPTION_FAILED = DecryptionError.MESSAGE
"""The one message of every DecryptionError raised by :func:`open_envelope`."""

BINDING_LABEL = b"dicomcrypt/v1/instance-binding"
PAYLOAD_KEY_LABEL = b"dicomcrypt/v2/payload-key"
"""HKDF info: the AES-256-GCM key of the payload, from the data key (version 2)."""
COMMITMENT_LABEL = b"dicomcrypt/v2/key-commitment"
"""HKDF info: the key commitment written in the header, from the data key (version 2)."""
HPKE_INFO_LABEL = b"dicomcrypt/v2/hpke-x25519"
"""Start of the HPKE ``info`` of a type-2 stanza; the bound header follows it."""


class Mode(enum.IntEnum):
    """How the payload was made (see docs/architecture.md, "Modes")."""

    LOSSLESS = 1
    LOSSY = 2
    STANDARD = 3


class Suite(enum.IntEnum):
    """Cipher suite. Version 1: AES-256-GCM keyed by the data key. Version 2: AES-256-GCM keyed by
    HKDF(data key), with an HKDF key commitment. Either way the stanza type says how the data
    key is wrapped."""

    AES256GCM_AESKW = 1


class StanzaType(enum.IntEnum):
    """Kinds of key stanza. 0 is reserved."""

    AES_KW = 1  # data key wrapped with the KEK derived from a symmetric site key
    HPKE_X25519 = 2  # data key sealed with HPKE to a recipient's X25519 public key (version 2)


_SUPPORTED_STANZAS = {1: frozenset({StanzaType.AES_KW}), 2: frozenset({StanzaType.AES_KW, StanzaType.HPKE_X25519})}
_BODY_SIZES = {StanzaType.AES_KW: WRAPPED_KEY_SIZE, StanzaType.HPKE_X25519: HPKE_WRAPPED_SIZE}


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
    header_length: int  # bytes before the ciphertext
    stanzas: tuple[Stanza, ...] = ()
    commitment: bytes = b""  # version 2: HKDF(data key, COMMITMENT_LABEL); empty in version 1
    bound_length: int = 0  # the leading header bytes in the associated data (v1: all of the header)


# -- packing ---------------------------------------------------------------------------------

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


def _pack_stanzas(stanzas: Sequence[Stanza]) -> bytes:
    parts = [_U8.pack(len(stanzas))]
    for stanza in stanzas:
        parts += [_U8.pack(stanza.type), bytes.fromhex(stanza.key_id), _U16.pack(len(stanza.body)), stanza.body]
    return b"".join(parts)


def _pack_preamble(version: int, mode: Mode, model_id: bytes, model_sha256: bytes) -> bytes:
    return b"".join([
        MAGIC, _U8.pack(version), _U8.pack(Suite.AES256GCM_AESKW), _U8.pack(mode), _U8.pack(len(model_id)),
        model_id, model_sha256,
    ])


def _pack_bound_v2(
    *, mode: Mode, model_id: bytes, model_sha256: bytes, nonce: bytes, ciphertext_length: int, commitment: bytes
) -> bytes:
    """The version-2 bound header: every header field except the stanzas (docs/format.md)."""
    return _pack_preamble(2, mode, model_id, model_sha256) + nonce + _U64.pack(ciphertext_length) + commitment


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


def _targets(key: Key | Iterable[Key] | None, recipients: Iterable[Recipient | str]) -> list[Target]:
    """The keys and recipients to seal for, checked: 1 to MAX_STANZAS, no repeats."""
    keys: list[Key] = [] if key is None else [key] if isinstance(key, Key) else list(key)
    if not all(isinstance(k, Key) for k in keys):
        raise TypeError("keys are dicomcrypt.crypto.Key objects (recipients go in recipients=)")
    parsed: list[Recipient] = [Recipient.parse(r) if isinstance(r, str) else r for r in recipients]
    if not all(isinstance(r, Recipient) for r in parsed):
        raise TypeError("recipients are dicomcrypt.crypto.Recipient objects or 'dcrecip1...' strings")
    return _check_targets([*keys, *parsed])


def _check_targets(targets: Sequence[Target]) -> list[Target]:
    if not 1 <= len(targets) <= MAX_STANZAS:
        raise ValueError(f"an envelope is sealed for 1 to {MAX_STANZAS} keys and recipients, got {len(targets)}")
    if len({t.key_id for t in targets}) != len(targets):
        raise ValueError("the same key or recipient was given twice")
    return list(targets)


def _derive(data_key: bytes) -> tuple[bytes, bytes]:
    """(payload key, key commitment) of a version-2 data key."""
    return hkdf(data_key, PAYLOAD_KEY_LABEL, KEY_SIZE), hkdf(data_key, COMMITMENT_LABEL, COMMITMENT_SIZE)


def _make_stanza(target: Target, data_key: bytes, bound: bytes) -> Stanza:
    """Wrap the data key for one target (version 2: HPKE info binds the bound header)."""
    if isinstance(target, Key):
        return Stanza(StanzaType.AES_KW, target.key_id, target.wrap(data_key))
    return Stanza(StanzaType.HPKE_X25519, target.key_id, target.wrap(data_key, HPKE_INFO_LABEL + bound))


def seal(
    plaintext: bytes,
    *,
    key: Key | Iterable[Key] | None = None,
    recipients: Iterable[Recipient | str] = (),
    mode: Mode | int,
    model_id: str,
    model_sha256: bytes,
    binding: bytes,
) -> bytes:
    """Encrypt ``plaintext`` (the payload) for site key(s) and/or recipients, bound to ``binding``.

    At least one key or recipient, at most :data:`MAX_STANZAS` together. A fresh random data
    key and nonce per call, so no (key, nonce) pair can ever repeat.
    """
    return _seal_deterministic(
        plaintext,
        keys=_targets(key, recipients),
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
    keys: Sequence[Target],
    mode: Mode | int,
    model_id: str,
    model_sha256: bytes,
    binding: bytes,
    data_key: bytes,
    nonce: bytes,
    version: int = VERSION,
) -> bytes:
    """:func:`seal` with the random parts given: for seal itself and the known-answer tests only.

    ``version=1`` writes the old layout, only so the version-1 known answers stay checked.
    (HPKE stanzas stay random: each has its own ephemeral key.) Never call this with a data key
    or nonce that was used before.
    """
    mode = Mode(mode)
    encoded_model_id = _check_model(mode, model_id, model_sha256)
    if not isinstance(binding, (bytes, bytearray)):
        raise TypeError("binding is bytes (see instance_binding)")
    if len(data_key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError(f"data key is {KEY_SIZE} bytes and nonce {NONCE_SIZE}")
    if not all(isinstance(k, (Key, Recipient)) for k in keys):
        raise TypeError("seal needs dicomcrypt.crypto.Key or Recipient objects")
    targets = _check_targets(list(keys))
    plaintext = bytes(plaintext)
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"plaintext of {len(plaintext)} bytes exceeds the AES-GCM limit of {MAX_PLAINTEXT}")
    data_key, nonce = bytes(data_key), bytes(nonce)
    length = len(plaintext) + TAG_SIZE
    if version == 1:
        site_keys = [t for t in targets if isinstance(t, Key)]
        if len(site_keys) != len(targets):
            raise ValueError("version 1 envelopes hold site keys only")
        stanzas = [Stanza(StanzaType.AES_KW, k.key_id, k.wrap(data_key)) for k in site_keys]
        header = _pack_preamble(1, mode, encoded_model_id, bytes(model_sha256))
        header += _pack_stanzas(stanzas) + nonce + _U64.pack(length)
        return header + AESGCM(data_key).encrypt(nonce, plaintext, header + bytes(binding))
    if version != 2:
        raise ValueError(f"cannot write envelope version {version}")
    payload_key, commitment = _derive(data_key)
    bound = _pack_bound_v2(
        mode=mode, model_id=encoded_model_id, model_sha256=bytes(model_sha256), nonce=nonce,
        ciphertext_length=length, commitment=commitment,
    )
    stanzas = [_make_stanza(t, data_key, bound) for t in targets]
    ciphertext = AESGCM(payload_key).encrypt(nonce, plaintext, bound + bytes(binding))
    return bound + _pack_stanzas(stanzas) + ciphertext


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
    if version not in READ_VERSIONS:
        raise EnvelopeFormatError(
            f"unsupported envelope version {version} "
            f"(this dicomcrypt reads versions {', '.join(map(str, READ_VERSIONS))})"
        )
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


def _read_stanzas(r: _Reader, version: int) -> tuple[Stanza, ...]:
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
        if kind in _SUPPORTED_STANZAS[version] and len(body) != _BODY_SIZES[StanzaType(kind)]:
            raise EnvelopeFormatError(
                f"stanza {i}: a {StanzaType(kind).name} body is {_BODY_SIZES[StanzaType(kind)]} bytes, not {len(body)}"
            )
        stanzas.append(Stanza(kind, key_id, body))
    if len({s.key_id for s in stanzas}) != count:
        raise EnvelopeFormatError("two key stanzas name the same key id")
    return tuple(stanzas)


def _read_length(r: _Reader) -> int:
    length = r.unpack(_U64, "ciphertext length")
    if length < TAG_SIZE:
        raise EnvelopeFormatError(f"ciphertext length {length} is shorter than the {TAG_SIZE}-byte tag")
    if length > MAX_PLAINTEXT + TAG_SIZE:
        raise EnvelopeFormatError(f"ciphertext length {length} exceeds the AES-GCM limit")
    return length


def _check_rest(r: _Reader, length: int) -> None:
    """The ciphertext must fill the rest of the blob exactly."""
    left = len(r.blob) - r.pos
    if left < length:
        raise EnvelopeFormatError(f"envelope truncated: ciphertext needs {length} bytes, only {left} left")
    if left > length:
        raise EnvelopeFormatError(f"{left - length} trailing bytes after the ciphertext")


def read_header(blob: bytes) -> EnvelopeHeader:
    """Parse and check the whole envelope's structure without a key (for ``inspect`` and open)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError("an envelope is bytes")
    r = _Reader(bytes(blob))
    version, suite, mode = _read_preamble(r)
    model_id, model_sha256 = _read_model(r, mode)
    commitment = b""
    if version == 1:
        stanzas = _read_stanzas(r, version)
        nonce = r.take(NONCE_SIZE, "nonce")
        length = _read_length(r)
        bound_length = r.pos
    else:
        nonce = r.take(NONCE_SIZE, "nonce")
        length = _read_length(r)
        commitment = r.take(COMMITMENT_SIZE, "key commitment")
        bound_length = r.pos
        stanzas = _read_stanzas(r, version)
    _check_rest(r, length)
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
        commitment=commitment,
        bound_length=bound_length,
    )


# -- opening ---------------------------------------------------------------------------------


def _as_ring(keys: KeyRing | Secret | Iterable[Secret]) -> KeyRing:
    if isinstance(keys, KeyRing):
        return keys
    if isinstance(keys, (Key, RecipientKey)):
        return KeyRing([keys])
    return KeyRing(keys)


def _usable(stanza: Stanza, secret: Secret, version: int) -> bool:
    if stanza.type not in _SUPPORTED_STANZAS[version]:
        return False
    return isinstance(secret, Key) if stanza.type == StanzaType.AES_KW else isinstance(secret, RecipientKey)


def _choose_stanza(header: EnvelopeHeader, ring: KeyRing) -> tuple[Stanza, Secret]:
    """The first stanza this code can use with a secret we hold; KeyNotFoundError names what is needed."""
    for stanza in header.stanzas:
        secret = ring.get(stanza.key_id)
        if secret is not None and _usable(stanza, secret, header.version):
            return stanza, secret
    for stanza in header.stanzas:
        if stanza.key_id in ring:
            raise EnvelopeFormatError(
                f"the stanza for key id {stanza.key_id} has type {stanza.type}, "
                "which this version cannot use with the key held"
            )
    raise KeyNotFoundError(list(header.key_ids), ring.key_ids)


def _unwrap(stanza: Stanza, secret: Secret, bound: bytes) -> bytes:
    if isinstance(secret, Key):
        return secret.unwrap(stanza.body)
    return secret.unwrap(stanza.body, HPKE_INFO_LABEL + bound)


def _open(
    blob: bytes, keys: KeyRing | Secret | Iterable[Secret], binding: bytes
) -> tuple[EnvelopeHeader, bytes, bytes]:
    """Header, plaintext and data key: the steps of docs/format.md "Open"."""
    header = read_header(blob)
    blob = bytes(blob)
    if not isinstance(binding, (bytes, bytearray)):
        raise TypeError("binding is bytes (see instance_binding)")
    stanza, secret = _choose_stanza(header, _as_ring(keys))
    bound = blob[: header.bound_length]
    ciphertext = blob[header.header_length :]
    try:
        data_key = _unwrap(stanza, secret, bound)
        if header.version == 1:
            payload_key = data_key
        else:
            payload_key, commitment = _derive(data_key)
            if not hmac.compare_digest(commitment, header.commitment):
                raise DecryptionError()
        plaintext = AESGCM(payload_key).decrypt(header.nonce, ciphertext, bound + bytes(binding))
    except (DecryptionError, InvalidTag):
        raise DecryptionError(DECRYPTION_FAILED) from None
    return header, plaintext, data_key


def open_envelope(
    blob: bytes, *, keys: KeyRing | Secret | Iterable[Secret], binding: bytes
) -> tuple[EnvelopeHeader, bytes]:
    """Authenticate and decrypt; returns the header and the plaintext (the payload).

    ``keys`` may hold site keys and recipient private keys. Raises EnvelopeFormatError
    (malformed), KeyNotFoundError (no key for any stanza) or DecryptionError with the one
    message :data:`DECRYPTION_FAILED` for every other failure.
    """
    header, plaintext, _ = _open(blob, keys, binding)
    return header, plaintext


def rewrap(
    blob: bytes,
    *,
    keys: KeyRing | Secret | Iterable[Secret],
    binding: bytes,
    to: Iterable[Target | str],
    keep: bool = False,
) -> bytes:
    """The same envelope with its data key wrapped for ``to`` (keys and recipients) instead.

    The envelope is opened (fully authenticated) first, so a damaged or forged file is never
    given new keys. Version 2: the bound header and the ciphertext are kept byte for byte;
    only the stanzas change. ``keep`` keeps the existing stanzas too (a target already present
    is wrapped afresh). Version 1 envelopes authenticate their stanzas inside the ciphertext's
    tag, so re-wrapping cannot keep the ciphertext: they are re-sealed as version 2 (fresh data
    key and nonce, same plaintext); ``keep`` is refused for them.
    """
    targets = [Recipient.parse(t) if isinstance(t, str) else t for t in to]
    if not all(isinstance(t, (Key, Recipient)) for t in targets):
        raise TypeError("rewrap targets are Key or Recipient objects or 'dcrecip1...' strings")
    header, plaintext, data_key = _open(blob, keys, binding)
    if header.version == 1:
        if keep:
            raise ValueError(
                "a version-1 envelope cannot keep its stanzas when re-wrapped: list every key and recipient"
            )
        return seal(
            plaintext,
            key=[t for t in targets if isinstance(t, Key)],
            recipients=[t for t in targets if isinstance(t, Recipient)],
            mode=header.mode,
            model_id=header.model_id,
            model_sha256=header.model_sha256,
            binding=binding,
        )
    _check_targets(targets)
    blob = bytes(blob)
    bound = blob[: header.bound_length]
    new_ids = {t.key_id for t in targets}
    kept = [s for s in header.stanzas if s.key_id not in new_ids] if keep else []
    if len(kept) + len(targets) > MAX_STANZAS:
        raise ValueError(f"an envelope holds at most {MAX_STANZAS} stanzas; {len(kept)} kept + {len(targets)} new")
    stanzas = kept + [_make_stanza(t, data_key, bound) for t in targets]
    return bound + _pack_stanzas(stanzas) + blob[header.header_length :]


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
