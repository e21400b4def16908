"""Public-key recipients: recipient strings, key files, HPKE stanzas, and instances sealed to them."""

from __future__ import annotations

import copy
import logging
import os
import pickle
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers.corpus import through_bytes
from pydicom.data import get_testdata_file
import pydicom

from dicomcrypt import dicom
from dicomcrypt.crypto import Key, KeyRing, Recipient, RecipientKey, load_secret
from dicomcrypt.crypto.recipients import _bech32m_encode
from dicomcrypt.envelope import MAX_STANZAS, Mode, StanzaType, open_envelope, read_header, seal
from dicomcrypt.errors import DecryptionError, InvalidInputError, KeyFileError, KeyNotFoundError, RecipientFormatError
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance, inspect_dataset

POSIX = os.name == "posix"
SECRET = bytes(range(0x60, 0x80))  # tests/vectors/envelope.json, "recipient a"


def _standard(payload: bytes = b"payload", **targets: object) -> bytes:
    return seal(payload, mode=Mode.STANDARD, model_id="", model_sha256=bytes(32), binding=b"bind", **targets)  # type: ignore[arg-type]


# -- recipient strings -------------------------------------------------------------------------


def test_recipient_string_round_trip_and_key_id() -> None:
    secret = RecipientKey.from_bytes(SECRET)
    text = str(secret.recipient)
    assert text.startswith("dcrecip1") and len(text) == 66 and text == text.lower()
    assert Recipient.parse(text) == secret.recipient
    assert Recipient.parse(text.upper()) == secret.recipient  # Bech32 is case-insensitive, not mixed
    assert len(secret.key_id) == 16 and secret.key_id == secret.recipient.key_id
    assert secret.key_id != RecipientKey.generate().key_id


def _mutations() -> list[object]:
    good = str(RecipientKey.from_bytes(SECRET).recipient)
    typo = good[:20] + ("q" if good[20] != "q" else "p") + good[21:]
    swapped = good[:30] + good[31] + good[30] + good[32:]
    other_prefix = _bech32m_encode("age", RecipientKey.from_bytes(SECRET).recipient.public_bytes)
    short = _bech32m_encode("dcrecip", bytes(31) + b"\x09")[:-1]
    long_key = _bech32m_encode("dcrecip", SECRET + b"\x01")
    return [
        pytest.param(typo, "bad checksum", id="one character changed"),
        pytest.param(swapped if swapped != good else typo, "bad checksum", id="two characters swapped"),
        pytest.param(good[:-1], "wrong length", id="truncated"),
        pytest.param(good + "q", "wrong length", id="one character too many"),
        pytest.param(long_key, "wrong length", id="33-byte key"),
        pytest.param(short, "wrong length", id="short"),
        pytest.param(other_prefix, "wrong prefix", id="another tool's prefix"),
        pytest.param("dcrecip2" + good[8:], "wrong prefix", id="wrong separator"),
        pytest.param(good[:10] + good[10:].upper(), "mixes upper and lower case", id="mixed case"),
        pytest.param(good[:12] + "b" + good[13:], "not in the Bech32 alphabet", id="character outside the alphabet"),
        pytest.param(" " + good, "spaces", id="leading space"),
        pytest.param("", "wrong prefix", id="empty"),
        pytest.param(_bech32m_encode("dcrecip", bytes(32)), "low-order point", id="all-zero public key"),
    ]


@pytest.mark.parametrize("text, reason", _mutations())
def test_malformed_recipient_strings_are_refused(text: str, reason: str) -> None:
    with pytest.raises(RecipientFormatError, match=reason):
        Recipient.parse(text)


# -- recipient key files -----------------------------------------------------------------------


def test_recipient_key_file_round_trip(tmp_path: Path) -> None:
    secret = RecipientKey.generate()
    path = tmp_path / "node.key"
    secret.save(path)
    assert RecipientKey.load(path) == secret
    assert load_secret(path) == secret
    text = path.read_text()
    assert f"# recipient: {secret.recipient}" in text and f"# key id: {secret.key_id}" in text
    assert [line.split()[0] for line in text.splitlines() if not line.startswith("#")] == ["DICOMCRYPT-RECIPIENT-KEY-1"]
    if POSIX:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_recipient_key_file_is_never_overwritten(tmp_path: Path) -> None:
    first = RecipientKey.generate()
    first.save(tmp_path / "node.key")
    with pytest.raises(Exception, match="exists"):
        RecipientKey.generate().save(tmp_path / "node.key")
    assert RecipientKey.load(tmp_path / "node.key") == first


@pytest.mark.skipif(not POSIX, reason="POSIX permissions")
def test_readable_recipient_key_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "node.key"
    RecipientKey.generate().save(path)
    path.chmod(0o640)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")  # a log line only, not a Python warning too (issue 15)
        RecipientKey.load(path)
    assert "recipient key file" in caplog.text and "accessible by group or others" in caplog.text
    assert "chmod 600" in caplog.text


def test_key_kinds_are_not_confused(tmp_path: Path) -> None:
    RecipientKey.generate().save(tmp_path / "node.key")
    Key.generate().save(tmp_path / "site.key")
    with pytest.raises(KeyFileError, match="recipient private key"):
        Key.load(tmp_path / "node.key")
    with pytest.raises(KeyFileError, match="site key file"):
        RecipientKey.load(tmp_path / "site.key")
    assert isinstance(load_secret(tmp_path / "site.key"), Key)


def test_repr_hides_the_private_key_and_pickles() -> None:
    secret = RecipientKey.from_bytes(SECRET)
    assert SECRET.hex() not in repr(secret) and secret.key_id in repr(secret)
    assert pickle.loads(pickle.dumps(secret)) == secret
    assert pickle.loads(pickle.dumps(secret.recipient)) == secret.recipient


# -- envelopes ---------------------------------------------------------------------------------


def test_any_one_recipient_opens_and_symmetric_keys_work_beside_them() -> None:
    a, b = RecipientKey.generate(), RecipientKey.generate()
    site = Key.generate()
    blob = _standard(key=site, recipients=[a.recipient, str(b.recipient)])
    header = read_header(blob)
    assert [s.type for s in header.stanzas] == [StanzaType.AES_KW, StanzaType.HPKE_X25519, StanzaType.HPKE_X25519]
    assert header.key_ids == (site.key_id, a.key_id, b.key_id)
    for holder in (a, b, site, KeyRing([RecipientKey.generate(), b])):
        assert open_envelope(blob, keys=holder, binding=b"bind")[1] == b"payload"
    with pytest.raises(DecryptionError):
        open_envelope(blob, keys=a, binding=b"other")


def test_recipients_only() -> None:
    a = RecipientKey.generate()
    blob = _standard(recipients=[a.recipient])
    assert open_envelope(blob, keys=[a], binding=b"bind")[1] == b"payload"


def test_private_key_matching_no_stanza_names_the_ids() -> None:
    a, stranger = RecipientKey.generate(), RecipientKey.generate()
    site = Key.generate()
    blob = _standard(key=site, recipients=[a.recipient])
    with pytest.raises(KeyNotFoundError) as info:
        open_envelope(blob, keys=stranger, binding=b"bind")
    assert info.value.needed == [site.key_id, a.key_id] and info.value.available == [stranger.key_id]
    assert a.key_id in str(info.value) and site.key_id in str(info.value) and stranger.key_id in str(info.value)


def test_stanza_cap_on_write() -> None:
    many = [RecipientKey.generate().recipient for _ in range(MAX_STANZAS)]
    assert len(read_header(_standard(recipients=many)).stanzas) == MAX_STANZAS
    with pytest.raises(ValueError, match="1 to 16"):
        _standard(key=Key.generate(), recipients=many)
    with pytest.raises(ValueError, match="1 to 16"):
        _standard()
    with pytest.raises(ValueError, match="twice"):
        _standard(recipients=[many[0], many[0]])


def test_every_truncation_of_a_recipient_envelope_is_a_format_error() -> None:
    from dicomcrypt.errors import EnvelopeFormatError

    a = RecipientKey.generate()
    blob = _standard(recipients=[a.recipient])
    for n in range(len(blob)):
        with pytest.raises(EnvelopeFormatError):
            open_envelope(blob[:n], keys=a, binding=b"bind")


# -- instances ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def test_instance_sealed_to_recipients_restores_exactly(ct: pydicom.Dataset) -> None:
    a, b = RecipientKey.generate(), RecipientKey.generate()
    before = copy.deepcopy(ct)
    sealed = encrypt_instance(ct, recipients=[str(a.recipient), b.recipient], mode="standard")
    assert ct == before
    encrypted = through_bytes(sealed.dataset)
    assert inspect_dataset(encrypted).key_ids == (a.key_id, b.key_id)
    assert inspect_dataset(encrypted).format_version == 2
    for holder in (a, KeyRing([b])):
        restored = decrypt_instance(encrypted, keys=holder).dataset
        np.testing.assert_array_equal(dicom.read_frames(restored)[0], dicom.read_frames(ct)[0])
        assert restored.PatientName == ct.PatientName
    with pytest.raises(KeyNotFoundError):
        decrypt_instance(encrypted, keys=RecipientKey.generate())


def test_encrypt_needs_a_target_and_respects_the_cap(ct: pydicom.Dataset) -> None:
    with pytest.raises(InvalidInputError, match="nothing to encrypt for"):
        encrypt_instance(ct, mode="standard")
    many = [RecipientKey.generate().recipient for _ in range(MAX_STANZAS)]
    with pytest.raises(InvalidInputError, match="at most 16"):
        encrypt_instance(ct, key=Key.generate(), recipients=many, mode="standard")
    with pytest.raises(RecipientFormatError):
        encrypt_instance(ct, recipients=["dcrecip1nope"], mode="standard")


def test_a_pasted_private_key_is_never_echoed(tmp_path: Path) -> None:
    from dicomcrypt.crypto import parse_target
    from dicomcrypt.crypto.keys import b64url
    from dicomcrypt.errors import KeyRingError

    secret_text = b64url(SECRET)
    for text in (f"DICOMCRYPT-RECIPIENT-KEY-1 {secret_text}", secret_text, "x" + secret_text):
        with pytest.raises(RecipientFormatError) as info:
            Recipient.parse(text)
        assert secret_text[:8] not in str(info.value)
    with pytest.raises(KeyRingError) as caught:
        parse_target(f"DICOMCRYPT-RECIPIENT-KEY-1 {secret_text}", tmp_path)
    assert secret_text[:8] not in str(caught.value)


@pytest.mark.parametrize("mask", [0x01, 0x80])
def test_every_single_byte_flip_of_a_recipient_envelope_is_refused(mask: int) -> None:
    from dicomcrypt.errors import EnvelopeFormatError

    a = RecipientKey.generate()
    blob = _standard(recipients=[a.recipient])
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= mask
        with pytest.raises((EnvelopeFormatError, DecryptionError, KeyNotFoundError)):
            open_envelope(bytes(tampered), keys=a, binding=b"bind")
