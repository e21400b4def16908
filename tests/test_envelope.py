"""The envelope format: known answers, refusals, and tamper resistance (docs/format.md)."""

from __future__ import annotations

import ast
import importlib.util
import sys
import json
from pathlib import Path
from typing import Any

import pytest

from dicomcrypt.crypto import Key, KeyRing, Recipient, RecipientKey
from dicomcrypt.envelope import (
    DECRYPTION_FAILED,
    MAGIC,
    MAX_STANZAS,
    VERSION,
    EnvelopeHeader,
    Mode,
    StanzaType,
    Suite,
    _seal_deterministic,
    instance_binding,
    open_envelope,
    read_header,
    seal,
)
from dicomcrypt.errors import DecryptionError, EnvelopeFormatError, KeyNotFoundError

VECTORS_DIR = Path(__file__).parent / "vectors"
VECTORS: dict[str, Any] = json.loads((VECTORS_DIR / "envelope.json").read_text(encoding="utf-8"))
ERRORS = {
    "EnvelopeFormatError": EnvelopeFormatError,
    "DecryptionError": DecryptionError,
    "KeyNotFoundError": KeyNotFoundError,
}

UIDS = {
    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.4",
    "sop_instance_uid": "1.2.3.4.5.6.7",
    "study_uid": "1.2.3.4.5",
    "series_uid": "1.2.3.4.5.6",
}
SHA = bytes(range(32))


def _keys(hexes: list[str]) -> list[Key]:
    return [Key.from_bytes(bytes.fromhex(h)) for h in hexes]


def _ring(vector: dict[str, Any]) -> KeyRing:
    """Site keys and recipient private keys of a vector."""
    recipients = [RecipientKey.from_bytes(bytes.fromhex(h)) for h in vector.get("recipient_keys", [])]
    return KeyRing([*_keys(vector["keys"]), *recipients])


def _generator() -> Any:
    """The independent implementation that wrote the vectors (tests/vectors/make_envelope_vectors.py)."""
    spec = importlib.util.spec_from_file_location("make_envelope_vectors", VECTORS_DIR / "make_envelope_vectors.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _by_name(items: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(item, id=item["name"]) for item in items]


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.from_bytes(bytes(range(100, 132)))


@pytest.fixture(scope="module")
def sealed(key: Key) -> bytes:
    return seal(
        b"the payload " * 4,
        key=key,
        mode=Mode.LOSSLESS,
        model_id="paper-grey@1",
        model_sha256=SHA,
        binding=instance_binding(**UIDS),
    )


# -- vectors ----------------------------------------------------------------------------------


def test_committed_vectors_match_their_script() -> None:
    assert _generator().render() == (VECTORS_DIR / "envelope.json").read_text(encoding="utf-8")


@pytest.mark.parametrize("vector", _by_name(VECTORS["generate"]))
def test_generate_vectors_reproduce_byte_for_byte(vector: dict[str, Any]) -> None:
    keys = _keys(vector["keys"])
    assert [k.key_id for k in keys] == vector["key_ids"]
    assert [k._kek.hex() for k in keys] == vector["keks"]
    if "binding_uids" in vector:
        assert instance_binding(**vector["binding_uids"]).hex() == vector["binding"]
    blob = _seal_deterministic(
        bytes.fromhex(vector["plaintext"]),
        keys=keys,
        mode=Mode[vector["mode"]],
        model_id=vector["model_id"],
        model_sha256=bytes.fromhex(vector["model_sha256"]),
        binding=bytes.fromhex(vector["binding"]),
        data_key=bytes.fromhex(vector["data_key"]),
        nonce=bytes.fromhex(vector["nonce"]),
        version=vector["version"],
    )
    assert blob.hex() == vector["envelope"]

    header = read_header(blob)
    assert header.version == vector["version"]
    assert blob[: header.header_length].hex() == vector["header"]
    if vector["version"] == 2:
        assert blob[: header.bound_length].hex() == vector["bound_header"]
        assert header.commitment.hex() == vector["commitment"]
    assert header.mode is Mode[vector["mode"]]
    assert header.model_id == vector["model_id"]
    assert header.key_ids == tuple(vector["key_ids"])
    assert [s.body.hex() for s in header.stanzas] == vector["wrapped_keys"]
    for k in keys:  # each stanza opens on its own
        _, plaintext = open_envelope(blob, keys=k, binding=bytes.fromhex(vector["binding"]))
        assert plaintext.hex() == vector["plaintext"]


@pytest.mark.parametrize("vector", _by_name(VECTORS["verify"]))
def test_verify_vectors_open(vector: dict[str, Any]) -> None:
    envelope, binding = bytes.fromhex(vector["envelope"]), bytes.fromhex(vector["binding"])
    _, plaintext = open_envelope(envelope, keys=_ring(vector), binding=binding)
    assert plaintext.hex() == vector["plaintext"]


@pytest.mark.parametrize("vector", _by_name(VECTORS["recipients"]))
def test_recipient_vectors(vector: dict[str, Any]) -> None:
    secret = RecipientKey.from_bytes(bytes.fromhex(vector["secret"]))
    assert secret.recipient.public_bytes.hex() == vector["public"]
    assert secret.key_id == vector["key_id"]
    assert str(secret.recipient) == vector["recipient"]
    assert Recipient.parse(vector["recipient"]) == secret.recipient


def test_the_independent_hpke_reproduces_rfc9180_a11() -> None:
    _generator().check_rfc9180()  # raises AssertionError on any mismatch


def test_recipient_stanzas_open_with_the_independent_hpke() -> None:
    """dicomcrypt's HPKE stanzas (cryptography/OpenSSL) open with the RFC 9180 code of the generator."""
    gen = _generator()
    secret = RecipientKey.from_bytes(bytes.fromhex(VECTORS["recipients"][0]["secret"]))
    key = Key.generate()
    blob = seal(b"payload", key=key, recipients=[secret.recipient], mode=Mode.STANDARD, model_id="",
                model_sha256=bytes(32), binding=b"b")
    header = read_header(blob)
    hpke_stanza = next(s for s in header.stanzas if s.type == StanzaType.HPKE_X25519)
    secret_bytes = bytes.fromhex(VECTORS["recipients"][0]["secret"])
    data_key = gen.hpke_open(secret_bytes, gen.hpke_info(blob[: header.bound_length]), hpke_stanza.body)
    assert gen.commitment(data_key) == header.commitment
    assert key.unwrap(header.stanzas[0].body) == data_key


@pytest.mark.parametrize("vector", _by_name(VECTORS["invalid"]))
def test_invalid_vectors_raise_their_error(vector: dict[str, Any]) -> None:
    with pytest.raises(ERRORS[vector["error"]]) as info:
        open_envelope(bytes.fromhex(vector["envelope"]), keys=_ring(vector), binding=bytes.fromhex(vector["binding"]))
    if vector["error"] == "DecryptionError":
        assert str(info.value) == DECRYPTION_FAILED
        assert info.value.__cause__ is None and info.value.__suppress_context__
    if vector["error"] == "KeyNotFoundError":
        assert info.value.needed == vector["needed_key_ids"]
        assert vector["needed_key_ids"][0] in str(info.value)


def test_invalid_vectors_cover_the_brief() -> None:
    names = {v["name"] for v in VECTORS["invalid"]}
    for required in (
        "bad magic", "unknown version", "unknown suite", "unknown mode", "truncated header",
        "truncated ciphertext", "trailing bytes", "flipped ciphertext byte", "flipped tag byte",
        "flipped header byte in model id", "flipped wrapped-key byte", "wrong binding", "wrong key",
        "too many stanzas",
        "v2 truncated recipient stanza", "v2 too many stanzas", "v2 recipient key matches no stanza",
        "v2 flipped commitment byte", "v2 recipient stanza wraps a data key the header does not commit to",
        "v2 recipient stanza made for another envelope's header", "v2 flipped enc byte of a recipient stanza",
    ):  # fmt: skip
        assert required in names


# -- tamper resistance ------------------------------------------------------------------------


def _key_id_span(blob: bytes) -> range:
    """Byte offsets of the first stanza's key id (flipping them names a key we do not hold)."""
    start = read_header(blob).bound_length + 1 + 1
    return range(start, start + 8)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_single_byte_flip_is_refused(key: Key, sealed: bytes, mask: int) -> None:
    binding = instance_binding(**UIDS)
    key_id_span = _key_id_span(sealed)
    for i in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[i] ^= mask
        allowed: tuple[type[Exception], ...] = (EnvelopeFormatError, DecryptionError)
        if i in key_id_span:
            allowed += (KeyNotFoundError,)
        with pytest.raises(allowed):
            open_envelope(bytes(tampered), keys=key, binding=binding)


def test_every_truncation_is_a_format_error(key: Key, sealed: bytes) -> None:
    binding = instance_binding(**UIDS)
    for n in range(len(sealed)):
        with pytest.raises(EnvelopeFormatError):
            open_envelope(sealed[:n], keys=key, binding=binding)


def test_moved_to_another_instance_fails(key: Key, sealed: bytes) -> None:
    for field, uid in UIDS.items():
        other = instance_binding(**{**UIDS, field: uid + ".1"})
        with pytest.raises(DecryptionError, match="^decryption failed"):
            open_envelope(sealed, keys=key, binding=other)


# -- seal and open ----------------------------------------------------------------------------


def test_round_trip_accepts_key_ring_and_iterables(key: Key, sealed: bytes) -> None:
    binding = instance_binding(**UIDS)
    others = [Key.generate() for _ in range(3)]
    for keys in (key, KeyRing([*others, key]), [others[0], key], (k for k in [key])):
        header, plaintext = open_envelope(sealed, keys=keys, binding=binding)
        assert plaintext == b"the payload " * 4
        assert header.key_ids == (key.key_id,)


def test_wrong_key_names_the_needed_id(key: Key, sealed: bytes) -> None:
    other = Key.generate()
    with pytest.raises(KeyNotFoundError) as info:
        open_envelope(sealed, keys=KeyRing([other]), binding=instance_binding(**UIDS))
    assert info.value.needed == [key.key_id]
    assert info.value.available == [other.key_id]
    with pytest.raises(KeyNotFoundError):
        open_envelope(sealed, keys=[], binding=instance_binding(**UIDS))


def test_two_seals_differ_in_nonce_and_data_key(key: Key) -> None:
    args: dict[str, Any] = dict(key=key, mode=Mode.STANDARD, model_id="", model_sha256=bytes(32), binding=b"b")
    a, b = seal(b"same", **args), seal(b"same", **args)
    ha, hb = read_header(a), read_header(b)
    assert ha.nonce != hb.nonce and ha.commitment != hb.commitment
    assert key.unwrap(ha.stanzas[0].body) != key.unwrap(hb.stanzas[0].body)
    assert a[ha.header_length :] != b[hb.header_length :]
    assert open_envelope(a, keys=key, binding=b"b")[1] == open_envelope(b, keys=key, binding=b"b")[1] == b"same"


def test_read_header_needs_no_key(key: Key, sealed: bytes) -> None:
    header = read_header(sealed)
    assert isinstance(header, EnvelopeHeader)
    assert sealed.startswith(MAGIC)
    assert (header.version, header.suite, header.mode) == (VERSION, Suite.AES256GCM_AESKW, Mode.LOSSLESS)
    assert len(header.commitment) == 32 and header.bound_length < header.header_length
    assert (header.model_id, header.model_sha256) == ("paper-grey@1", SHA)
    assert header.key_ids == (key.key_id,)
    assert len(header.nonce) == 12
    assert header.ciphertext_length == len(b"the payload " * 4) + 16
    assert header.header_length + header.ciphertext_length == len(sealed)
    assert header.stanzas[0].type == StanzaType.AES_KW and len(header.stanzas[0].body) == 40
    with pytest.raises(AttributeError):
        header.mode = Mode.LOSSY  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(mode=Mode.STANDARD, model_id="paper-grey@1", model_sha256=bytes(32)),
        dict(mode=Mode.STANDARD, model_id="", model_sha256=SHA),
        dict(mode=Mode.LOSSY, model_id="", model_sha256=SHA),
        dict(mode=Mode.LOSSLESS, model_id="m@1", model_sha256=SHA[:31]),
        dict(mode=Mode.LOSSLESS, model_id="m" * 256, model_sha256=SHA),
        dict(mode=Mode.LOSSLESS, model_id="m\n@1", model_sha256=SHA),
        dict(mode=9, model_id="m@1", model_sha256=SHA),
    ],
)
def test_seal_refuses_inconsistent_fields(key: Key, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        seal(b"x", key=key, binding=b"", **kwargs)


def test_seal_deterministic_caps_keys() -> None:
    keys = [Key.from_bytes(bytes([i]) * 32) for i in range(MAX_STANZAS + 1)]
    common: dict[str, Any] = dict(
        mode=Mode.STANDARD, model_id="", model_sha256=bytes(32), binding=b"", data_key=bytes(32), nonce=bytes(12)
    )
    blob = _seal_deterministic(b"x", keys=keys[:MAX_STANZAS], **common)
    assert len(read_header(blob).key_ids) == MAX_STANZAS
    assert open_envelope(blob, keys=keys[-2], binding=b"")[1] == b"x"
    with pytest.raises(ValueError):
        _seal_deterministic(b"x", keys=keys, **common)
    with pytest.raises(ValueError):
        _seal_deterministic(b"x", keys=[], **common)


# -- binding ----------------------------------------------------------------------------------


def test_binding_is_unambiguous_and_canonical() -> None:
    base = instance_binding("1.2", "3.4", "5", "6")
    assert instance_binding("1.2", "3.4", "5", "6") == base
    assert instance_binding("1.2", "3.45", "", "6") != instance_binding("1.2", "3.4", "56", "6")
    assert instance_binding("1.2", "3.4", "6", "5") != base  # order matters: study vs series
    assert instance_binding("1.2\x00", " 3.4 ", "5", "6") == base  # DICOM padding is not significant
    assert base == bytes([30]) + b"dicomcrypt/v1/instance-binding" + b"\x00\x031.2\x00\x033.4\x00\x015\x00\x016"
    with pytest.raises(ValueError):
        instance_binding("1.2", "3.4é", "5", "6")
    with pytest.raises(TypeError):
        instance_binding("1.2", None, "5", "6")  # type: ignore[arg-type]


def test_imports_only_stdlib_and_cryptography() -> None:
    """docs/architecture.md: envelope and crypto never import numpy, pydicom or torch."""
    package = Path(__file__).parent.parent / "dicomcrypt"
    allowed = set(sys.stdlib_module_names) | {"cryptography", "__future__"}
    for path in [package / "envelope.py", *sorted((package / "crypto").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module or ""]
            else:
                continue
            for name in roots:
                ok = (
                    name.split(".")[0] in allowed
                    or name in ("dicomcrypt.errors", "dicomcrypt.atomic")
                    or name.startswith("dicomcrypt.crypto")
                )
                assert ok, f"{path.name} imports {name}"
