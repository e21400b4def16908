"""Write tests/vectors/envelope.json: known answers for the dicomcrypt envelope, version 1.

This script is a second, straight-line implementation of docs/format.md that shares no code
with dicomcrypt: it packs bytes with ``struct`` and calls the ``cryptography`` primitives
directly. The tests check that dicomcrypt reproduces its "generate" vectors byte for byte,
opens its "verify" vectors, and refuses each "invalid" vector with the error it names; and
that this script still produces the committed file.

Run from the repository root:  python tests/vectors/make_envelope_vectors.py
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
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

    def add_invalid(name: str, blob: bytes, error: str, *, keys: list[bytes] = [key_a], bnd: bytes = bind, **extra: Any) -> None:
        invalid.append({"name": name, "keys": [k.hex() for k in keys], "binding": bnd.hex(), "error": error, **extra, "envelope": blob.hex()})

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

    return {
        "format": "dicomcrypt envelope, version 1 (docs/format.md)",
        "generated_by": "tests/vectors/make_envelope_vectors.py",
        "notes": "All byte strings are lowercase hex. keys are 32-byte site keys. generate: seal with the given data key and nonce must give envelope exactly. verify: open must give plaintext. invalid: open with keys and binding must raise error.",
        "generate": generate,
        "verify": verify,
        "invalid": invalid,
    }


def render() -> str:
    return json.dumps(make_vectors(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
