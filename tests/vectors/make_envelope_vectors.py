"""Write tests/vectors/envelope.json: known answers for the dicomcrypt envelope, versions 1 and 2.

This script is a second, straight-line implementation of docs/format.md that shares no code
with dicomcrypt: it packs bytes with ``struct`` and calls the ``cryptography`` primitives
directly. HPKE (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) is
written out here from the RFC's pseudocode with the standard library's HMAC and a fixed
ephemeral key, so its output is a known answer that dicomcrypt (which uses ``cryptography``'s
HPKE, OpenSSL underneath) must open; the tests also open dicomcrypt's stanzas with
:func:`hpke_open` below. Recipient strings are Bech32m (BIP 350), also written out here. The tests check that dicomcrypt reproduces its "generate" vectors byte for byte,
opens its "verify" vectors, and refuses each "invalid" vector with the error it names; and
that this script still produces the committed file.

Run from the repository root:  python tests/vectors/make_envelope_vectors.py
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

OUT = Path(__file__).with_name("envelope.json")

MAGIC = b"DCEV"


def hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def key_id(site_key: bytes) -> bytes:
    return hkdf(site_key, b"dicomcrypt/v1/key-id", 8)


def kek(site_key: bytes) -> bytes:
    return hkdf(site_key, b"dicomcrypt/v1/kek", 32)


def binding(sop_class: str, sop_instance: str, study: str, series: str) -> bytes:
    label = b"dicomcrypt/v1/instance-binding"
    out = bytes([len(label)]) + label
    for uid in (sop_class, sop_instance, study, series):
        out += struct.pack(">H", len(uid)) + uid.encode("ascii")
    return out


def stanza(kind: int, kid: bytes, body: bytes) -> bytes:
    return struct.pack(">B8sH", kind, kid, len(body)) + body


def header(
    *,
    mode: int,
    model_id: bytes,
    model_sha256: bytes,
    stanzas: list[bytes],
    nonce: bytes,
    ct_len: int,
    version: int = 1,
    suite: int = 1,
    magic: bytes = MAGIC,
) -> bytes:
    return (
        magic
        + struct.pack(">BBBB", version, suite, mode, len(model_id))
        + model_id
        + model_sha256
        + bytes([len(stanzas)])
        + b"".join(stanzas)
        + nonce
        + struct.pack(">Q", ct_len)
    )


def envelope(hdr_fields: dict[str, Any], data_key: bytes, plaintext: bytes, bind: bytes) -> bytes:
    """Header + AES-256-GCM(data_key, nonce, plaintext, aad = header || binding)."""
    hdr = header(ct_len=len(plaintext) + 16, **hdr_fields)
    return hdr + AESGCM(data_key).encrypt(hdr_fields["nonce"], plaintext, hdr + bind)


# -- version 2 -------------------------------------------------------------------------------


def payload_key(data_key: bytes) -> bytes:
    return hkdf(data_key, b"dicomcrypt/v2/payload-key", 32)


def commitment(data_key: bytes) -> bytes:
    return hkdf(data_key, b"dicomcrypt/v2/key-commitment", 32)


def recipient_key_id(public: bytes) -> bytes:
    return hkdf(public, b"dicomcrypt/v2/recipient-key-id", 8)


def x25519_public(secret: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def x25519_dh(secret: bytes, public: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(secret).exchange(x25519.X25519PublicKey.from_public_bytes(public))


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()  # RFC 5869; an empty salt is HashLen zeros


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


KEM_SUITE_ID = b"KEM" + struct.pack(">H", 0x0020)
HPKE_SUITE_ID = b"HPKE" + struct.pack(">HHH", 0x0020, 0x0001, 0x0002)


def labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info, length)


def hpke_key_schedule(shared_secret: bytes, info: bytes, suite_id: bytes = HPKE_SUITE_ID, nk: int = 32) -> tuple[bytes, bytes]:
    """RFC 9180 5.1, mode_base (0): (key, base_nonce); AES-256-GCM unless told otherwise."""
    psk_id_hash = labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = labeled_extract(suite_id, shared_secret, b"secret", b"")
    return (
        labeled_expand(suite_id, secret, b"key", context, nk),
        labeled_expand(suite_id, secret, b"base_nonce", context, 12),
    )


# RFC 9180 appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode. The
# RFC has no X25519 + AES-256-GCM vector, so this checks the same code with the AES-128 suite id.
RFC9180_A11 = {
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "skEm": "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736",
    "pkEm": "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
    "skRm": "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
    "pkRm": "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
    "shared_secret": "fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc",
    "key": "4531685d41d65f03dc48f6b8302c05b0",
    "base_nonce": "56d890e5accaaf011cff4b7d",
    "pt": "4265617574792069732074727574682c20747275746820626561757479",
    "aad": "436f756e742d30",
    "ct": "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
}


def check_rfc9180() -> None:
    """This file's HPKE reproduces RFC 9180 A.1.1 (run before writing any vector)."""
    v = {k: bytes.fromhex(h) for k, h in RFC9180_A11.items()}
    assert x25519_public(v["skEm"]) == v["pkEm"] and x25519_public(v["skRm"]) == v["pkRm"]
    shared = dhkem_shared_secret(x25519_dh(v["skEm"], v["pkRm"]), v["pkEm"], v["pkRm"])
    assert shared == v["shared_secret"] == dhkem_shared_secret(x25519_dh(v["skRm"], v["pkEm"]), v["pkEm"], v["pkRm"])
    key, nonce = hpke_key_schedule(shared, v["info"], b"HPKE" + struct.pack(">HHH", 0x0020, 0x0001, 0x0001), 16)
    assert (key, nonce) == (v["key"], v["base_nonce"])
    assert AESGCM(key).encrypt(nonce, v["pt"], v["aad"]) == v["ct"]


def dhkem_shared_secret(dh: bytes, enc: bytes, public_r: bytes) -> bytes:
    """RFC 9180 4.1 ExtractAndExpand with kem_context = enc || pkRm."""
    eae_prk = labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh)
    return labeled_expand(KEM_SUITE_ID, eae_prk, b"shared_secret", enc + public_r, 32)


def hpke_seal(public_r: bytes, info: bytes, plaintext: bytes, ephemeral_secret: bytes) -> bytes:
    """SealBase with a given ephemeral key: enc || ciphertext (sequence number 0, empty aad)."""
    enc = x25519_public(ephemeral_secret)
    shared = dhkem_shared_secret(x25519_dh(ephemeral_secret, public_r), enc, public_r)
    key, nonce = hpke_key_schedule(shared, info)
    return enc + AESGCM(key).encrypt(nonce, plaintext, b"")


def hpke_open(secret_r: bytes, info: bytes, body: bytes) -> bytes:
    """OpenBase: the inverse of hpke_seal, for checking dicomcrypt's own stanzas."""
    enc, sealed = body[:32], body[32:]
    public_r = x25519_public(secret_r)
    shared = dhkem_shared_secret(x25519_dh(secret_r, enc), enc, public_r)
    key, nonce = hpke_key_schedule(shared, info)
    return AESGCM(key).decrypt(nonce, sealed, b"")


BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32_polymod(values: list[int]) -> int:
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def recipient_string(public: bytes) -> str:
    """Bech32m, human-readable part "dcrecip", data = the 32-byte public key."""
    hrp = "dcrecip"
    bits = "".join(f"{b:08b}" for b in public)
    bits += "0" * (-len(bits) % 5)
    data = [int(bits[i : i + 5], 2) for i in range(0, len(bits), 5)]
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = _bech32_polymod(expanded + data + [0] * 6) ^ 0x2BC830A3
    return hrp + "1" + "".join(BECH32[d] for d in data + [(pm >> 5 * (5 - i)) & 31 for i in range(6)])


def bound_v2(*, mode: int, model_id: bytes, model_sha256: bytes, nonce: bytes, ct_len: int, commit: bytes, version: int = 2, suite: int = 1, magic: bytes = MAGIC) -> bytes:
    return magic + struct.pack(">BBBB", version, suite, mode, len(model_id)) + model_id + model_sha256 + nonce + struct.pack(">Q", ct_len) + commit


def envelope_v2(fields: dict[str, Any], data_key: bytes, plaintext: bytes, bind: bytes, stanzas: Any, *, commit: bytes | None = None) -> bytes:
    """bound || count || stanzas || AES-256-GCM(payload_key, nonce, plaintext, aad = bound || binding).

    ``stanzas`` is a list of bytes, or a function of the bound header returning one.
    """
    bound = bound_v2(ct_len=len(plaintext) + 16, commit=commitment(data_key) if commit is None else commit, **fields)
    packed = stanzas(bound) if callable(stanzas) else stanzas
    return bound + bytes([len(packed)]) + b"".join(packed) + AESGCM(payload_key(data_key)).encrypt(fields["nonce"], plaintext, bound + bind)


def hpke_info(bound: bytes) -> bytes:
    return b"dicomcrypt/v2/hpke-x25519" + bound


def flip(blob: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(blob)
    out[index] ^= mask
    return bytes(out)


def seq(n: int, start: int = 0) -> bytes:
    """n bytes counting up from start: fixed, recognisable test values."""
    return bytes((start + i) % 256 for i in range(n))


def make_vectors() -> dict[str, Any]:
    key_a = seq(32, 0x00)
    key_b = seq(32, 0x80)
    key_c = seq(32, 0x40)  # the "wrong key": a receiver holding only this one
    data_key = seq(32, 0xA0)
    nonce = seq(12, 0xC0)
    sha = bytes.fromhex("5d41402abc4b2a76b9719d911017c592" * 2)
    uids = {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "sop_instance_uid": "1.2.826.0.1.3680043.8.498.1",
        "study_uid": "1.2.826.0.1.3680043.8.498.2",
        "series_uid": "1.2.826.0.1.3680043.8.498.3",
    }
    bind = binding(*uids.values())
    plaintext = b"DCP1 stands in for the payload; any bytes will do here."

    def stanza_for(site_key: bytes, dk: bytes = data_key) -> bytes:
        return stanza(1, key_id(site_key), aes_key_wrap(kek(site_key), dk))

    base = {
        "mode": 1,
        "model_id": b"paper-grey@1",
        "model_sha256": sha,
        "stanzas": [stanza_for(key_a)],
        "nonce": nonce,
    }

    generate = []

    def add_generate(name: str, keys: list[bytes], fields: dict[str, Any], pt: bytes, bnd: bytes, dk: bytes = data_key, **extra: Any) -> bytes:
        blob = envelope(fields, dk, pt, bnd)
        hdr_len = len(blob) - len(pt) - 16
        generate.append(
            {
                "name": name,
                "version": 1,
                "keys": [k.hex() for k in keys],
                "key_ids": [key_id(k).hex() for k in keys],
                "keks": [kek(k).hex() for k in keys],
                "wrapped_keys": [aes_key_wrap(kek(k), dk).hex() for k in keys],
                "data_key": dk.hex(),
                "nonce": fields["nonce"].hex(),
                "mode": {1: "LOSSLESS", 2: "LOSSY", 3: "STANDARD"}[fields["mode"]],
                "model_id": fields["model_id"].decode("utf-8"),
                "model_sha256": fields["model_sha256"].hex(),
                "plaintext": pt.hex(),
                "binding": bnd.hex(),
                **extra,
                "header": blob[:hdr_len].hex(),
                "envelope": blob.hex(),
            }
        )
        return blob

    good = add_generate("lossless, one key, instance binding", [key_a], base, plaintext, bind, binding_uids=uids)
    add_generate(
        "standard mode, no model, empty plaintext, empty binding",
        [key_b],
        {**base, "mode": 3, "model_id": b"", "model_sha256": bytes(32), "stanzas": [stanza_for(key_b, seq(32, 0x20))], "nonce": seq(12, 0x10)},
        b"",
        b"",
        dk=seq(32, 0x20),
    )
    add_generate(
        "lossy, two keys, UTF-8 model id",
        [key_a, key_b],
        {**base, "mode": 2, "model_id": "modèle-thorax@2".encode(), "stanzas": [stanza_for(key_a), stanza_for(key_b)]},
        plaintext * 3,
        bind,
        binding_uids=uids,
    )

    # Verify: envelopes dicomcrypt cannot make but must open.
    unknown = stanza(2, seq(8, 0xEE), seq(48, 0x55))  # a later recipient type, e.g. HPKE
    verify = [
        {
            "name": "unknown stanza type before a usable one is skipped",
            "keys": [key_a.hex()],
            "recipient_keys": [],
            "binding": bind.hex(),
            "plaintext": plaintext.hex(),
            "envelope": envelope({**base, "stanzas": [unknown, stanza_for(key_a)]}, data_key, plaintext, bind).hex(),
        }
    ]

    # Invalid: each names the error it must raise. Structural ones are otherwise well formed
    # (sealed over their own header), so only the parser can be what refuses them.
    hdr_len = len(good) - len(plaintext) - 16
    model_id_offset = 4 + 4  # magic, version, suite, mode, model id length
    stanza_offset = model_id_offset + len(base["model_id"]) + 32 + 1
    wrapped_offset = stanza_offset + 1 + 8 + 2

    def sealed(**changes: Any) -> bytes:
        return envelope({**base, **changes}, data_key, plaintext, bind)

    def sealed_raw_header(hdr: bytes) -> bytes:
        return hdr + AESGCM(data_key).encrypt(nonce, plaintext, hdr + bind)

    too_many = [stanza_for(seq(32, 0x11 * i + 1)) for i in range(16)] + [stanza_for(key_a)]
    invalid: list[dict[str, Any]] = []

    def add_invalid(name: str, blob: bytes, error: str, *, keys: list[bytes] = [key_a], recipient_keys: list[bytes] = [], bnd: bytes = bind, **extra: Any) -> None:
        invalid.append(
            {"name": name, "keys": [k.hex() for k in keys], "recipient_keys": [r.hex() for r in recipient_keys], "binding": bnd.hex(), "error": error, **extra, "envelope": blob.hex()}
        )

    fmt = "EnvelopeFormatError"
    dec = "DecryptionError"
    add_invalid("bad magic", sealed(magic=b"DCEW"), fmt)
    add_invalid("unknown version", sealed(version=2), fmt)
    add_invalid("unknown suite", sealed(suite=2), fmt)
    add_invalid("unknown mode", sealed(mode=4), fmt)
    add_invalid("truncated header", good[: stanza_offset + 5], fmt)
    add_invalid("truncated before the ciphertext", good[:hdr_len], fmt)
    add_invalid("truncated ciphertext", good[:-1], fmt)
    add_invalid("trailing bytes", good + b"\x00", fmt)
    add_invalid("too many stanzas", sealed(stanzas=too_many), fmt)
    add_invalid("no stanzas", sealed(stanzas=[]), fmt)
    add_invalid("reserved stanza type 0", sealed(stanzas=[stanza(0, key_id(key_a), aes_key_wrap(kek(key_a), data_key))]), fmt)
    add_invalid("AES-KW stanza body of the wrong length", sealed(stanzas=[stanza(1, key_id(key_a), aes_key_wrap(kek(key_a), data_key) + bytes(8))]), fmt)
    add_invalid("two stanzas for one key id", sealed(stanzas=[stanza_for(key_a), stanza_for(key_a)]), fmt)
    add_invalid("only stanza for our key is of an unknown type", sealed(stanzas=[stanza(2, key_id(key_a), seq(48))]), fmt)
    add_invalid("standard mode naming a model", sealed(mode=3), fmt)
    add_invalid("lossless mode without a model id", sealed(model_id=b""), fmt)
    add_invalid("model id not UTF-8", sealed(model_id=b"paper\xff@1"), fmt)
    add_invalid("model id with a control character", sealed(model_id=b"paper\n@1"), fmt)
    add_invalid(
        "ciphertext shorter than the tag",
        header(ct_len=15, **base) + bytes(15),
        fmt,
    )
    add_invalid("flipped ciphertext byte", flip(good, hdr_len), dec)
    add_invalid("flipped tag byte", flip(good, len(good) - 1), dec)
    add_invalid("flipped header byte in model id", flip(good, model_id_offset + len(base["model_id"]) - 1, 0x03), dec)  # "@1" -> "@2"
    add_invalid("flipped model SHA-256 byte", flip(good, model_id_offset + len(base["model_id"])), dec)
    add_invalid("flipped nonce byte", flip(good, hdr_len - 8 - 12), dec)
    add_invalid("flipped wrapped-key byte", flip(good, wrapped_offset + 3), dec)
    add_invalid("wrong binding", good, dec, bnd=binding(*list(uids.values())[:3], uids["series_uid"] + "9"))
    add_invalid("empty binding", good, dec, bnd=b"")
    add_invalid(
        "stanza wrapped under another key, labelled with this key's id",
        sealed_raw_header(header(ct_len=len(plaintext) + 16, **{**base, "stanzas": [stanza(1, key_id(key_a), aes_key_wrap(kek(key_b), data_key))]})),
        dec,
    )
    add_invalid("wrong key", good, "KeyNotFoundError", keys=[key_c], needed_key_ids=[key_id(key_a).hex()])

    # -- version 2: key commitment, stanzas outside the associated data, HPKE recipients --------

    rec_a = seq(32, 0x60)  # recipient private keys (X25519 clamps them; any 32 bytes will do)
    rec_b = seq(32, 0x30)
    rec_c = seq(32, 0x90)  # a recipient that no envelope is made for
    eph_1, eph_2 = seq(32, 0xD0), seq(32, 0xE0)  # fixed ephemeral keys: known answers only
    recipients = [
        {
            "name": name,
            "secret": r.hex(),
            "public": x25519_public(r).hex(),
            "key_id": recipient_key_id(x25519_public(r)).hex(),
            "recipient": recipient_string(x25519_public(r)),
        }
        for name, r in (("recipient a", rec_a), ("recipient b", rec_b), ("recipient c", rec_c))
    ]

    def kw(site_key: bytes, dk: bytes = data_key) -> bytes:
        return stanza(1, key_id(site_key), aes_key_wrap(kek(site_key), dk))

    def rs(secret: bytes, eph: bytes, dk: bytes = data_key) -> Any:
        """A type-2 stanza for the recipient with this private key, made once the bound header is known."""
        public = x25519_public(secret)
        return lambda bound: stanza(2, recipient_key_id(public), hpke_seal(public, hpke_info(bound), dk, eph))

    def with_bound(*parts: Any) -> Any:
        return lambda bound: [p(bound) if callable(p) else p for p in parts]

    v2_base = {"mode": 1, "model_id": b"paper-grey@1", "model_sha256": sha, "nonce": nonce}

    def add_generate_v2(name: str, keys: list[bytes], fields: dict[str, Any], pt: bytes, bnd: bytes, dk: bytes = data_key, **extra: Any) -> bytes:
        blob = envelope_v2(fields, dk, pt, bnd, [kw(k, dk) for k in keys])
        bound_len = len(bound_v2(ct_len=0, commit=bytes(32), **fields))
        generate.append(
            {
                "name": name,
                "version": 2,
                "keys": [k.hex() for k in keys],
                "key_ids": [key_id(k).hex() for k in keys],
                "keks": [kek(k).hex() for k in keys],
                "wrapped_keys": [aes_key_wrap(kek(k), dk).hex() for k in keys],
                "data_key": dk.hex(),
                "payload_key": payload_key(dk).hex(),
                "commitment": commitment(dk).hex(),
                "nonce": fields["nonce"].hex(),
                "mode": {1: "LOSSLESS", 2: "LOSSY", 3: "STANDARD"}[fields["mode"]],
                "model_id": fields["model_id"].decode("utf-8"),
                "model_sha256": fields["model_sha256"].hex(),
                "plaintext": pt.hex(),
                "binding": bnd.hex(),
                **extra,
                "bound_header": blob[:bound_len].hex(),
                "header": blob[: len(blob) - len(pt) - 16].hex(),
                "envelope": blob.hex(),
            }
        )
        return blob

    good_v2 = add_generate_v2("v2 lossless, one key, instance binding", [key_a], v2_base, plaintext, bind, binding_uids=uids)
    add_generate_v2(
        "v2 standard mode, two keys, empty binding",
        [key_b, key_a],
        {**v2_base, "mode": 3, "model_id": b"", "model_sha256": bytes(32), "nonce": seq(12, 0x10)},
        b"",
        b"",
        dk=seq(32, 0x20),
    )

    def add_verify(name: str, blob: bytes, *, keys: list[bytes] = [], recipient_keys: list[bytes] = [], bnd: bytes = bind, pt: bytes = plaintext, **extra: Any) -> None:
        verify.append(
            {
                "name": name,
                "keys": [k.hex() for k in keys],
                "recipient_keys": [r.hex() for r in recipient_keys],
                "binding": bnd.hex(),
                "plaintext": pt.hex(),
                **extra,
                "envelope": blob.hex(),
            }
        )

    one_recipient = envelope_v2(v2_base, data_key, plaintext, bind, with_bound(rs(rec_a, eph_1)))
    add_verify("v2 one recipient", one_recipient, recipient_keys=[rec_a], ephemeral_secret=eph_1.hex(),
               hpke_info=hpke_info(one_recipient[: len(bound_v2(ct_len=0, commit=bytes(32), **v2_base))]).hex())
    mixed = envelope_v2(v2_base, data_key, plaintext, bind, with_bound(kw(key_b), rs(rec_a, eph_1), rs(rec_b, eph_2)))
    add_verify("v2 key and two recipients, opened by the second recipient", mixed, recipient_keys=[rec_b])
    add_verify("v2 key and two recipients, opened by the site key", mixed, keys=[key_b])
    add_verify("v2 key and two recipients, opened by the first recipient", mixed, recipient_keys=[rec_a, rec_c])
    add_verify(
        "v2 unknown stanza type before a usable one is skipped",
        envelope_v2(v2_base, data_key, plaintext, bind, with_bound(stanza(9, seq(8, 0xEE), seq(48, 0x55)), rs(rec_a, eph_1))),
        recipient_keys=[rec_a],
    )

    def sealed_v2(parts: Any, fields: dict[str, Any] = v2_base, **kw_args: Any) -> bytes:
        return envelope_v2(fields, data_key, plaintext, bind, parts, **kw_args)

    bound_len = len(bound_v2(ct_len=0, commit=bytes(32), **v2_base))
    first_body = bound_len + 1 + 1 + 8 + 2  # count, type, key id, body length
    add_v2 = lambda name, blob, error, **extra: add_invalid("v2 " + name, blob, error, **extra)  # noqa: E731
    add_v2("unknown version 3", bound_v2(ct_len=len(plaintext) + 16, commit=commitment(data_key), version=3, **v2_base) + one_recipient[bound_len:], fmt, keys=[], recipient_keys=[rec_a])
    add_v2("truncated recipient stanza", one_recipient[: first_body + 40], fmt, keys=[], recipient_keys=[rec_a])
    add_v2("truncated before the stanzas", one_recipient[: bound_len - 5], fmt, keys=[], recipient_keys=[rec_a])
    add_v2("recipient stanza body of the wrong length", sealed_v2(with_bound(lambda b: rs(rec_a, eph_1)(b)[:-1])), fmt, keys=[], recipient_keys=[rec_a])
    add_v2("too many stanzas", sealed_v2([kw(seq(32, 0x11 * i + 1)) for i in range(16)] + [kw(key_a)]), fmt)
    add_v2("no stanzas", sealed_v2([]), fmt)
    add_v2("two stanzas for one recipient", sealed_v2(with_bound(rs(rec_a, eph_1), rs(rec_a, eph_2))), fmt, keys=[], recipient_keys=[rec_a])
    add_v2("trailing bytes", good_v2 + b"\x00", fmt)
    add_v2(
        "recipient key matches no stanza",
        mixed,
        "KeyNotFoundError",
        keys=[key_c],
        recipient_keys=[rec_c],
        needed_key_ids=[key_id(key_b).hex(), recipient_key_id(x25519_public(rec_a)).hex(), recipient_key_id(x25519_public(rec_b)).hex()],
    )
    add_v2("site key held only as a recipient stanza's id", sealed_v2([stanza(2, key_id(key_a), seq(80))]), fmt)
    add_v2("flipped commitment byte", flip(good_v2, bound_len - 1), dec)
    add_v2("flipped nonce byte", flip(good_v2, bound_len - 32 - 8 - 12), dec)
    add_v2("flipped ciphertext byte", flip(good_v2, len(good_v2) - len(plaintext) - 16), dec)
    add_v2("flipped tag byte", flip(good_v2, len(good_v2) - 1), dec)
    add_v2("flipped wrapped-key byte", flip(good_v2, first_body + 3), dec)
    add_v2("flipped enc byte of a recipient stanza", flip(one_recipient, first_body + 1), dec, keys=[], recipient_keys=[rec_a])
    add_v2("flipped sealed byte of a recipient stanza", flip(one_recipient, first_body + 40), dec, keys=[], recipient_keys=[rec_a])
    add_v2(
        "recipient stanza with a low-order ephemeral key",  # enc of all zeros: X25519 gives the zero secret
        sealed_v2([stanza(2, recipient_key_id(x25519_public(rec_a)), bytes(32) + seq(48))]),
        dec,
        keys=[],
        recipient_keys=[rec_a],
    )
    add_v2("wrong binding", good_v2, dec, bnd=binding(*list(uids.values())[:3], uids["series_uid"] + "9"))
    add_v2("recipient wrong binding", one_recipient, dec, keys=[], recipient_keys=[rec_a], bnd=b"")
    other_bound = bound_v2(ct_len=len(plaintext) + 16, commit=commitment(data_key), **{**v2_base, "nonce": seq(12, 0x70)})
    add_v2(
        "recipient stanza made for another envelope's header",
        sealed_v2([rs(rec_a, eph_1)(other_bound)]),
        dec,
        keys=[],
        recipient_keys=[rec_a],
    )
    other_dk = seq(32, 0x05)
    add_v2(
        "recipient stanza wraps a data key the header does not commit to",  # invisible salamander
        sealed_v2(with_bound(kw(key_a), rs(rec_b, eph_2, other_dk))),
        dec,
        keys=[],
        recipient_keys=[rec_b],
    )
    add_v2(
        "payload under an uncommitted data key",  # header commits to another key than the one sealed
        sealed_v2([kw(key_a)], commit=commitment(other_dk)),
        dec,
    )
    add_v2(
        "version-1 layout labelled version 2",
        header(ct_len=len(plaintext) + 16, version=2, **{**base, "stanzas": [kw(key_a)]}) + AESGCM(data_key).encrypt(nonce, plaintext, b""),
        fmt,
    )

    return {
        "format": "dicomcrypt envelope, versions 1 and 2 (docs/format.md)",
        "generated_by": "tests/vectors/make_envelope_vectors.py",
        "notes": "All byte strings are lowercase hex. keys are 32-byte site keys; recipient_keys are 32-byte X25519 private keys. recipients: each private key's public key, key id and recipient string. generate: seal with the given version, data key and nonce must give envelope exactly. verify: open must give plaintext. invalid: open with keys, recipient_keys and binding must raise error.",
        "recipients": recipients,
        "generate": generate,
        "verify": verify,
        "invalid": invalid,
    }


def render() -> str:
    check_rfc9180()
    return json.dumps(make_vectors(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
