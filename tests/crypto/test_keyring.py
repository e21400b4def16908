"""Key rings (both key kinds, keyring files, rotation) and re-wrapping envelopes and instances."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers.corpus import through_bytes
from pydicom.data import get_testdata_file

from dicomcrypt import dicom
from dicomcrypt.crypto import Key, KeyRing, RecipientKey
from dicomcrypt.envelope import MAX_STANZAS, Mode, _seal_deterministic, open_envelope, read_header, rewrap, seal
from dicomcrypt.errors import (
    DecryptionError,
    EnvelopeFormatError,
    KeyFileError,
    KeyNotFoundError,
    KeyRingError,
    RecipientFormatError,
)
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance, inspect_dataset, rekey_instance

BIND = b"binding"


def _seal(**targets: object) -> bytes:
    return seal(b"the payload", mode=Mode.STANDARD, model_id="", model_sha256=bytes(32), binding=BIND, **targets)  # type: ignore[arg-type]


# -- key rings ---------------------------------------------------------------------------------


def test_ring_holds_both_kinds_by_key_id() -> None:
    site, node = Key.generate(), RecipientKey.generate()
    ring = KeyRing([site, node, site])
    assert ring.key_ids == (site.key_id, node.key_id)
    assert ring.get(node.key_id) is node and node in ring and site in ring
    assert ring.encrypt_to == ()
    with pytest.raises(TypeError):
        KeyRing([node.recipient])  # type: ignore[list-item]  # a public key decrypts nothing


def test_folder_with_both_kinds(tmp_path: Path) -> None:
    site, node = Key.generate(), RecipientKey.generate()
    site.save(tmp_path / "a-site.key")
    node.save(tmp_path / "b-node.key")
    ring = KeyRing.load(tmp_path)
    assert ring.key_ids == (site.key_id, node.key_id)
    blob = _seal(recipients=[node.recipient])
    assert open_envelope(blob, keys=ring, binding=BIND)[1] == b"the payload"


def _write_keyring(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keyring.toml"
    path.write_text(text)
    return path


def test_keyring_file_current_and_decrypt_only(tmp_path: Path) -> None:
    old, new, node = Key.generate(), Key.generate(), RecipientKey.generate()
    partner = RecipientKey.generate()
    (tmp_path / "old").mkdir()
    old.save(tmp_path / "old" / "2026.key")
    new.save(tmp_path / "2027.key")
    node.save(tmp_path / "node.key")
    path = _write_keyring(
        tmp_path,
        f'encrypt = ["2027.key", "{partner.recipient}"]\n'
        'decrypt = ["old/", "node.key"]  # decrypt-only\n',
    )
    ring = KeyRing.load(path)
    assert ring.encrypt_to == (new, partner.recipient)
    assert set(ring.key_ids) == {new.key_id, old.key_id, node.key_id}
    assert partner.key_id not in ring  # a public recipient decrypts nothing
    blob = _seal(key=old)
    assert open_envelope(blob, keys=ring, binding=BIND)[1] == b"the payload"  # old files still open


@pytest.mark.parametrize(
    "text, message",
    [
        ('encrypt = "site.key"\n', "must be a list"),
        ('keys = ["site.key"]\n', "unknown setting keys"),
        ("encrypt = [\n", "not valid TOML"),
        ("", "lists no keys"),
        ('decrypt = ["dcrecip1qqqq"]\n', "private key file"),
        ('encrypt = ["missing.key"]\n', "not found"),
        ('encrypt = ["dcrecip1qqqq"]\n', "wrong length"),
    ],
)
def test_bad_keyring_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises((KeyRingError, KeyFileError, RecipientFormatError), match=message):
        KeyRing.load(_write_keyring(tmp_path, text))


# -- rewrap ------------------------------------------------------------------------------------


def test_rewrap_keeps_the_ciphertext_and_retires_the_old_key() -> None:
    old, new, node = Key.generate(), Key.generate(), RecipientKey.generate()
    blob = _seal(key=old)
    header = read_header(blob)
    out = rewrap(blob, keys=old, binding=BIND, to=[new, node.recipient])
    new_header = read_header(out)
    assert out[new_header.header_length :] == blob[header.header_length :]  # ciphertext and tag, byte for byte
    assert out[: new_header.bound_length] == blob[: header.bound_length]
    assert new_header.key_ids == (new.key_id, node.key_id)
    for holder in (new, node):
        assert open_envelope(out, keys=holder, binding=BIND)[1] == b"the payload"
    with pytest.raises(KeyNotFoundError):
        open_envelope(out, keys=old, binding=BIND)


def test_rewrap_keep_adds_a_recipient() -> None:
    old, node = Key.generate(), RecipientKey.generate()
    out = rewrap(_seal(key=old), keys=old, binding=BIND, to=[str(node.recipient)], keep=True)
    assert read_header(out).key_ids == (old.key_id, node.key_id)
    for holder in (old, node):
        assert open_envelope(out, keys=holder, binding=BIND)[1] == b"the payload"


def test_rewrap_refuses_what_does_not_authenticate() -> None:
    old, new = Key.generate(), Key.generate()
    blob = bytearray(_seal(key=old))
    blob[-1] ^= 1
    with pytest.raises(DecryptionError):
        rewrap(bytes(blob), keys=old, binding=BIND, to=[new])
    with pytest.raises(DecryptionError):
        rewrap(_seal(key=old), keys=old, binding=b"moved", to=[new])
    with pytest.raises(KeyNotFoundError):
        rewrap(_seal(key=old), keys=new, binding=BIND, to=[new])


def test_rewrap_caps_stanzas() -> None:
    old = Key.generate()
    blob = _seal(key=old)
    many = [Key.generate() for _ in range(MAX_STANZAS)]
    assert len(read_header(rewrap(blob, keys=old, binding=BIND, to=many)).stanzas) == MAX_STANZAS
    with pytest.raises(ValueError, match="at most 16"):
        rewrap(blob, keys=old, binding=BIND, to=many, keep=True)
    with pytest.raises(ValueError, match="1 to 16"):
        rewrap(blob, keys=old, binding=BIND, to=[])


def test_rewrap_of_a_version_1_envelope_reseals_as_version_2() -> None:
    old, node = Key.generate(), RecipientKey.generate()
    v1 = _seal_deterministic(
        b"old file", keys=[old], mode=Mode.STANDARD, model_id="", model_sha256=bytes(32), binding=BIND,
        data_key=bytes(range(32)), nonce=bytes(12), version=1,
    )
    out = rewrap(v1, keys=old, binding=BIND, to=[node.recipient])
    assert read_header(v1).version == 1 and read_header(out).version == 2
    assert open_envelope(out, keys=node, binding=BIND)[1] == b"old file"
    with pytest.raises(ValueError, match="version-1"):
        rewrap(v1, keys=old, binding=BIND, to=[node.recipient], keep=True)


def test_a_stanza_swapped_in_from_another_envelope_fails() -> None:
    """Stanzas are outside the associated data; the key commitment is what refuses a transplant."""
    key = Key.generate()
    a, b = _seal(key=key), _seal(key=key)
    ha, hb = read_header(a), read_header(b)
    franken = a[: ha.bound_length] + b[hb.bound_length : hb.header_length] + a[ha.header_length :]
    with pytest.raises(DecryptionError):
        open_envelope(franken, keys=key, binding=BIND)


# -- instances ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def test_rekey_instance_keeps_pixel_ciphertext(ct: pydicom.Dataset) -> None:
    old, new = Key.generate(), Key.generate()
    encrypted = through_bytes(encrypt_instance(ct, key=old, mode="standard").dataset)
    before = copy.deepcopy(encrypted)
    outcome = rekey_instance(encrypted, keys=KeyRing([old]), to=[new])
    assert encrypted == before and outcome.action == "rekeyed"
    rekeyed = through_bytes(outcome.dataset)
    env_old = dicom.read_private_block(encrypted).envelope
    env_new = dicom.read_private_block(rekeyed).envelope
    assert env_new[read_header(env_new).header_length :] == env_old[read_header(env_old).header_length :]
    assert inspect_dataset(rekeyed).key_ids == (new.key_id,)
    restored = decrypt_instance(rekeyed, keys=new).dataset
    np.testing.assert_array_equal(dicom.read_frames(restored)[0], dicom.read_frames(ct)[0])
    with pytest.raises(KeyNotFoundError):
        decrypt_instance(rekeyed, keys=old)


def test_encrypt_with_a_keyring_uses_its_current_targets(ct: pydicom.Dataset) -> None:
    current, retired, node = Key.generate(), Key.generate(), RecipientKey.generate()
    ring = KeyRing([current, retired], encrypt_to=[current, node.recipient])
    encrypted = encrypt_instance(ct, key=ring, mode="standard").dataset
    assert inspect_dataset(encrypted).key_ids == (current.key_id, node.key_id)
    from dicomcrypt.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="no current encryption key"):
        encrypt_instance(ct, key=KeyRing([retired]), mode="standard")


def test_rekey_passes_plain_instances_through(ct: pydicom.Dataset) -> None:
    assert rekey_instance(ct, keys=Key.generate(), to=[Key.generate()]).action == "passed through"


def test_rekey_refuses_edited_readable_elements(ct: pydicom.Dataset) -> None:
    old = Key.generate()
    encrypted = encrypt_instance(ct, key=old, mode="standard").dataset
    info = dicom.read_private_block(encrypted)
    import dataclasses

    dicom.write_private_block(encrypted, dataclasses.replace(info, key_ids=("0" * 16,)))
    with pytest.raises((DecryptionError, EnvelopeFormatError)):
        rekey_instance(encrypted, keys=old, to=[Key.generate()])


def test_version_1_instances_still_decrypt_and_rekey_upgrades_them(ct: pydicom.Dataset) -> None:
    """Files written before envelope version 2 (issue 2's format) open, and rekey re-seals them."""
    import dataclasses

    from dicomcrypt.envelope import instance_binding

    key, node = Key.generate(), RecipientKey.generate()
    encrypted = encrypt_instance(ct, key=key, mode="standard").dataset
    info = dicom.read_private_block(encrypted)
    binding = instance_binding(*dicom.uids(encrypted))
    header, payload = open_envelope(info.envelope, keys=key, binding=binding)
    v1 = _seal_deterministic(
        payload, keys=[key], mode=header.mode, model_id="", model_sha256=bytes(32), binding=binding,
        data_key=bytes(range(32)), nonce=bytes(range(12)), version=1,
    )
    dicom.write_private_block(encrypted, dataclasses.replace(info, format_version=1, envelope=v1))
    old = through_bytes(encrypted)
    assert inspect_dataset(old).format_version == 1
    restored = decrypt_instance(old, keys=key).dataset
    np.testing.assert_array_equal(dicom.read_frames(restored)[0], dicom.read_frames(ct)[0])

    outcome = rekey_instance(old, keys=key, to=[node.recipient])
    assert "re-sealed as version 2" in outcome.note
    upgraded = through_bytes(outcome.dataset)
    assert inspect_dataset(upgraded).format_version == 2
    assert inspect_dataset(upgraded).key_ids == (node.key_id,)
    restored = decrypt_instance(upgraded, keys=node).dataset
    np.testing.assert_array_equal(dicom.read_frames(restored)[0], dicom.read_frames(ct)[0])


def test_the_same_target_twice_is_one_stanza(ct: pydicom.Dataset) -> None:
    key, node = Key.generate(), RecipientKey.generate()
    ring = KeyRing([key], encrypt_to=[key, node.recipient])
    encrypted = encrypt_instance(ct, key=ring, recipients=[str(node.recipient)], mode="standard").dataset
    assert inspect_dataset(encrypted).key_ids == (key.key_id, node.key_id)


def test_ring_pickles_with_its_targets() -> None:
    import pickle

    site, node = Key.generate(), RecipientKey.generate()
    ring = KeyRing([site, node], encrypt_to=[site, node.recipient])
    copy_ = pickle.loads(pickle.dumps(ring))
    assert copy_.key_ids == ring.key_ids and copy_.encrypt_to == ring.encrypt_to
    assert site.key_id in repr(ring) and "encrypt_to" in repr(ring)
