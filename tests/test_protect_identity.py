"""--protect-identity: PS3.15 Annex E de-identification with the originals in a CMS-encrypted
Encrypted Attributes Sequence, restored by the holder of the RSA key; bad input."""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from helpers.corpus import TEST_FILES_DIR, read_quietly, sample, through_bytes, to_bytes
from helpers.dciodvfy import new_errors
from helpers.identity import attribute_differences, make_identity
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomcrypt.cli.main import main
from dicomcrypt.crypto import Key
from dicomcrypt.crypto.cms import IdentityKey, load_certificates, open_enveloped, parse_enveloped
from dicomcrypt.dicom.confidentiality import BASIC_PROFILE, Pseudonyms, action_for, deidentify
from dicomcrypt.errors import (
    IdentityFormatError,
    IdentityKeyError,
    IntegrityError,
    InvalidInputError,
    KeyFileError,
)
from dicomcrypt.identity_protection import (
    IDENTITY_RESTORED_NOTE,
    NOT_RESTORED_NOTE,
    IdentityProtection,
    describe_identity_protection,
    restore_identity,
)
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("pki")
    return make_identity(folder, "restorer"), make_identity(folder, "stranger")


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate()


@pytest.fixture(scope="module")
def protection(pki) -> IdentityProtection:
    return IdentityProtection.load([pki[0].cert])


@pytest.fixture(scope="module")
def identity_key(pki) -> IdentityKey:
    return IdentityKey.load(pki[0].key)


def _ct() -> Dataset:
    return read_quietly(TEST_FILES_DIR / "CT_small.dcm")


# --------------------------------------------------------------------------- the table


def test_table_is_ps3_15_table_e1_1():
    assert len(BASIC_PROFILE) == 456
    expected = {
        0x00100010: "Z",  # Patient's Name
        0x00100020: "Z",  # Patient ID
        0x00100030: "Z",  # Patient's Birth Date
        0x00080018: "U",  # SOP Instance UID
        0x0020000D: "U",  # Study Instance UID
        0x00081155: "U",  # Referenced SOP Instance UID
        0x00080080: "X/Z/D",  # Institution Name
        0x00081140: "X/Z/U*",  # Referenced Image Sequence
        0x00101010: "X",  # Patient's Age
        0x00880200: "X",  # Icon Image Sequence
    }
    assert {tag: BASIC_PROFILE[tag] for tag in expected} == expected
    assert action_for(0x00091001) == "X"  # private attributes
    assert action_for(0x50020010) == "X"  # curve data
    assert action_for(0x60023000) == "X" and action_for(0x60024000) == "X"  # overlay data, comments
    assert action_for(0x00280010) is None and action_for(0x00080016) is None  # Rows, SOP Class UID: kept


def test_deidentify_every_action_and_nested_uids():
    ds = _ct()
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = ds.SOPClassUID
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5"
    original = copy.deepcopy(ds)
    originals = deidentify(ds, Pseudonyms(b"s" * 32))

    assert str(ds.PatientName).startswith("DEIDENTIFIED^") and ds.PatientID.startswith("DEID-")  # Z, pseudonym
    assert "PatientBirthDate" in ds and not ds.PatientBirthDate and not ds.StudyDate  # Z: present, empty
    assert ds.InstitutionName == "DEIDENTIFIED"  # X/Z/D -> D
    assert "OtherPatientIDsSequence" not in ds  # X
    assert not any(elem.tag.is_private for elem in ds)  # private attributes: X
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert ds[keyword].value.startswith("2.25.") and ds[keyword].value != original[keyword].value
    nested = ds.ReferencedImageSequence[0]
    assert nested.ReferencedSOPInstanceUID.startswith("2.25.")  # X/Z/U*: kept, UIDs inside replaced
    assert nested.ReferencedSOPClassUID == original.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    # The record holds exactly the original top-level elements that changed, whole.
    assert originals.PatientName == original.PatientName
    assert originals.ReferencedImageSequence == original.ReferencedImageSequence
    assert "SOPClassUID" not in originals and "Rows" not in originals and "PixelData" not in originals


def test_replacement_uids_are_consistent_within_a_secret_and_unlinkable_across():
    a, b = _ct(), _ct()
    deidentify(a, Pseudonyms(b"k" * 32))
    deidentify(b, Pseudonyms(b"k" * 32))
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.PatientID == b.PatientID
    c = _ct()
    deidentify(c, Pseudonyms(b"other secret...."))
    assert c.StudyInstanceUID != a.StudyInstanceUID and c.PatientID != a.PatientID
    assert len(a.StudyInstanceUID) <= 64


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_protected_pixels_and_identity_restore_exactly(name, key, protection, identity_key):
    original = read_quietly(TEST_FILES_DIR / name)
    outcome = encrypt_instance(original, key=key, mode="standard", protect_identity=protection)
    file_bytes = to_bytes(outcome.dataset)
    for secret in (str(original.PatientName), original.PatientID, original.StudyInstanceUID, original.SOPInstanceUID):
        assert secret.encode() not in file_bytes, f"{secret!r} is readable in the protected file"
    received = through_bytes(outcome.dataset)
    assert received.PatientIdentityRemoved == "YES"
    assert "restorable by issuer CN=restorer" in describe_identity_protection(received)
    assert describe_identity_protection(original) is None
    assert received.DeidentificationMethod

    restored = decrypt_instance(received, keys=key, identity_keys=[identity_key])
    assert restored.note == IDENTITY_RESTORED_NOTE
    assert attribute_differences(original, restored.dataset) == []
    assert np.array_equal(restored.dataset.pixel_array, original.pixel_array)
    assert restored.dataset.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID


def test_without_the_identity_key_pixels_are_restored_and_the_note_says_identity_is_not(key, protection, identity_key):
    original = _ct()
    received = through_bytes(encrypt_instance(original, key=key, mode="standard", protect_identity=protection).dataset)
    pixels_only = decrypt_instance(received, keys=key)
    assert pixels_only.note == NOT_RESTORED_NOTE
    out = pixels_only.dataset
    assert np.array_equal(out.pixel_array, original.pixel_array)
    assert str(out.PatientName).startswith("DEIDENTIFIED^") and out.PatientIdentityRemoved == "YES"
    assert "EncryptedAttributesSequence" in out  # kept, so the identity can be restored later
    later = decrypt_instance(through_bytes(out), keys=key, identity_keys=[identity_key])
    assert later.action == "decrypted" and later.mode == "identity"
    assert attribute_differences(original, later.dataset) == []


def test_lossy_restore_references_the_original_instance(key, protection, identity_key):
    original = _ct()
    received = through_bytes(encrypt_instance(original, key=key, mode="lossy", protect_identity=protection).dataset)
    derived = decrypt_instance(received, keys=key, identity_keys=[identity_key]).dataset
    assert derived.SOPInstanceUID != original.SOPInstanceUID
    assert derived.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert derived.PatientName == original.PatientName and derived.StudyInstanceUID == original.StudyInstanceUID


def test_non_image_instance_gets_identity_protection_only(key, protection, identity_key):
    original = read_quietly(TEST_FILES_DIR / "rtplan.dcm")
    outcome = encrypt_instance(original, key=key, protect_identity=protection)
    assert (outcome.action, outcome.mode) == ("encrypted", "identity")
    assert outcome.dataset.PatientName != original.PatientName
    restored = decrypt_instance(through_bytes(outcome.dataset), keys=key, identity_keys=[identity_key]).dataset
    assert attribute_differences(original, restored) == []


def test_non_ascii_names_survive_the_encrypted_record(key, protection, identity_key):
    original = _ct()
    original.SpecificCharacterSet = "ISO_IR 192"
    original.PatientName = "Müller^Jürgen=ミュラー"
    original = through_bytes(original)
    received = through_bytes(encrypt_instance(original, key=key, mode="standard", protect_identity=protection).dataset)
    restored = decrypt_instance(received, keys=key, identity_keys=[identity_key]).dataset
    assert str(restored.PatientName) == "Müller^Jürgen=ミュラー"


def test_several_certificates_any_one_key_restores(pki, key):
    restorer, stranger = pki
    protection = IdentityProtection.load([restorer.cert, stranger.cert])
    received = through_bytes(encrypt_instance(_ct(), key=key, mode="standard", protect_identity=protection).dataset)
    for pair in pki:
        restored = decrypt_instance(received, keys=key, identity_keys=[IdentityKey.load(pair.key)]).dataset
        assert restored.PatientName == _ct().PatientName


@pytest.mark.peer
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb.dcm", "rtstruct.dcm"])
def test_protected_output_adds_no_dciodvfy_errors(key, protection, name):
    original = read_quietly(sample(name))
    protected = encrypt_instance(original, key=key, mode="standard", protect_identity=protection).dataset
    assert not new_errors(original, protected)


# --------------------------------------------------------------------------- bad input


def test_wrong_identity_key_names_the_recipient_and_changes_nothing(pki, key, protection):
    received = through_bytes(encrypt_instance(_ct(), key=key, mode="standard", protect_identity=protection).dataset)
    before = to_bytes(received)
    with pytest.raises(IdentityKeyError, match="CN=restorer, serial 0x") as caught:
        decrypt_instance(received, keys=key, identity_keys=[IdentityKey.load(pki[1].key)])
    assert IdentityKey.load(pki[1].key).fingerprint in str(caught.value)
    assert to_bytes(received) == before


def _tamper_content(ds: Dataset, offset_from_end: int) -> None:
    item = ds.EncryptedAttributesSequence[0]
    content = bytearray(item.EncryptedContent)
    content[-offset_from_end] ^= 0x01
    item.EncryptedContent = bytes(content)


def test_tampered_encrypted_attributes_fail_the_pixel_envelope_check(key, protection, identity_key):
    received = through_bytes(encrypt_instance(_ct(), key=key, mode="standard", protect_identity=protection).dataset)
    _tamper_content(received, 40)
    for identity_keys in ([], [identity_key]):  # detected even by a holder of the pixel key alone
        with pytest.raises(IntegrityError, match=r"Encrypted Attributes Sequence \(0400,0500\) is not the one sealed"):
            decrypt_instance(received, keys=key, identity_keys=identity_keys)
    del received.EncryptedAttributesSequence
    with pytest.raises(IntegrityError, match="altered, removed or replaced"):
        decrypt_instance(received, keys=key)


def test_tampered_cms_without_pixel_envelope_is_refused(key, protection, identity_key):
    original = read_quietly(TEST_FILES_DIR / "rtplan.dcm")
    protected = through_bytes(encrypt_instance(original, key=key, protect_identity=protection).dataset)
    item = protected.EncryptedAttributesSequence[0]
    iv = parse_enveloped(item.EncryptedContent).iv
    # A flipped IV bit flips the same bit of the first plaintext block: the (0400,0550) tag.
    item.EncryptedContent = item.EncryptedContent.replace(iv, bytes([iv[0] ^ 0x04]) + iv[1:])
    with pytest.raises(IdentityFormatError, match=r"Modified Attributes Sequence \(0400,0550\)"):
        restore_identity(copy.deepcopy(protected), [identity_key])
    broken = through_bytes(protected)
    broken.EncryptedAttributesSequence[0].EncryptedContent = b"\x30\x03\x02\x01"
    with pytest.raises(IdentityFormatError, match="not a CMS EnvelopedData"):
        restore_identity(broken, [identity_key])


def test_cli_wrong_identity_key_writes_nothing(tmp_path: Path, pki, key):
    site = tmp_path / "site.key"
    key.save(site)
    src = tmp_path / "in.dcm"
    src.write_bytes((TEST_FILES_DIR / "CT_small.dcm").read_bytes())
    enc = tmp_path / "enc.dcm"
    assert main(["encrypt", "-k", str(site), "--mode", "standard", "--protect-identity",
                 "--identity-cert", str(pki[0].cert), "-j", "1", "-q", str(src), str(enc)]) == 0
    out = tmp_path / "dec.dcm"
    code = main(["decrypt", "-k", str(site), "--identity-key", str(pki[1].key), "-j", "1", str(enc), str(out)])
    assert code != 0 and not out.exists()
    argv = ["decrypt", "-k", str(site), "--identity-key", str(pki[0].key), "-j", "1", "-q", str(enc), str(out)]
    assert main(argv) == 0
    assert attribute_differences(read_quietly(src), read_quietly(out)) == []


def test_cli_refuses_protect_identity_without_certificate(tmp_path: Path, key, capsys):
    site = tmp_path / "site.key"
    key.save(site)
    source = TEST_FILES_DIR / "CT_small.dcm"
    assert main(["encrypt", "-k", str(site), "--protect-identity", str(source), str(tmp_path / "o.dcm")]) != 0
    assert "--identity-cert" in capsys.readouterr().err
    assert not (tmp_path / "o.dcm").exists()


def test_already_protected_instance_is_refused(key, protection):
    original = read_quietly(TEST_FILES_DIR / "rtplan.dcm")
    protected = encrypt_instance(original, key=key, protect_identity=protection).dataset
    with pytest.raises(InvalidInputError, match="already protected"):
        protection.protect(protected)


def test_identity_files_bad_input(tmp_path: Path, pki, caplog: pytest.LogCaptureFixture):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_path = tmp_path / "ec.pem"
    ec_path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ec_path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an RSA key"):
        IdentityKey.load(ec_path)
    with pytest.raises(KeyFileError, match="not a PEM or DER X.509 certificate"):
        load_certificates(pki[0].key)
    locked = tmp_path / "locked.pem"
    rsa_key = serialization.load_pem_private_key(pki[0].key.read_bytes(), None)
    locked.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"secret")))
    locked.chmod(0o600)
    with pytest.raises(KeyFileError, match="password-protected"):
        IdentityKey.load(locked)
    with pytest.raises(KeyFileError, match="cannot read"):
        IdentityKey.load(tmp_path / "missing.pem")
    readable = tmp_path / "readable.pem"
    readable.write_bytes(pki[0].key.read_bytes())
    readable.chmod(0o644)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")  # a log line only, not a Python warning too (issue 15)
        IdentityKey.load(readable)
    assert "chmod 600" in caplog.text


def test_cms_opens_with_the_key_alone(pki):
    """PS3.15 (and gdcmanon -d) need only the private key, not the certificate."""
    from dicomcrypt.crypto.cms import seal_enveloped

    blob = seal_enveloped(b"x" * 33, load_certificates(pki[0].cert), cipher="aes128")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_enveloped(blob + b"\0", [IdentityKey.load(pki[0].key)]) == b"x" * 33
    assert os.stat(pki[0].key).st_mode & 0o077 == 0


@pytest.mark.slow
def test_cli_batch_keeps_a_study_consistent_across_workers(tmp_path: Path, pki, key):
    site = tmp_path / "site.key"
    key.save(site)
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.dcm", "b.dcm"):  # two instances of one study and one patient
        ds = _ct()
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{ord(name[0])}"
        ds.save_as(src / name, enforce_file_format=True)
    out = tmp_path / "out"
    assert main(["encrypt", "-k", str(site), "--mode", "standard", "--protect-identity",
                 "--identity-cert", str(pki[0].cert), "-j", "2", "-q", str(src), str(out)]) == 0
    a, b = read_quietly(out / "a.dcm"), read_quietly(out / "b.dcm")
    assert a.StudyInstanceUID == b.StudyInstanceUID != _ct().StudyInstanceUID
    assert a.PatientID == b.PatientID and a.SOPInstanceUID != b.SOPInstanceUID


def test_cli_unreadable_identity_certificate_stops_before_any_file(tmp_path: Path, key, capsys):
    site = tmp_path / "site.key"
    key.save(site)
    out = tmp_path / "out.dcm"
    code = main(["encrypt", "-k", str(site), "--protect-identity", "--identity-cert", str(tmp_path / "missing.pem"),
                 str(TEST_FILES_DIR / "CT_small.dcm"), str(out)])
    assert code != 0 and not out.exists()
    assert "identity certificate" in capsys.readouterr().err


def test_cli_tampered_encrypted_attributes_write_nothing(tmp_path: Path, pki, key, protection):
    site = tmp_path / "site.key"
    key.save(site)
    protected = through_bytes(encrypt_instance(_ct(), key=key, mode="standard", protect_identity=protection).dataset)
    _tamper_content(protected, 40)
    src = tmp_path / "tampered.dcm"
    protected.save_as(src, enforce_file_format=True)
    out = tmp_path / "out.dcm"
    for extra in ([], ["--identity-key", str(pki[0].key)]):
        assert main(["decrypt", "-k", str(site), *extra, "-j", "1", str(src), str(out)]) != 0
        assert not out.exists()


def test_rekeyed_instance_still_restores_its_identity(key, protection, identity_key):
    from dicomcrypt.pipeline import rekey_instance

    original = _ct()
    protected = through_bytes(encrypt_instance(original, key=key, mode="standard", protect_identity=protection).dataset)
    new_key = Key.generate()
    rekeyed = through_bytes(rekey_instance(protected, keys=key, to=[new_key]).dataset)
    # CT_small's own (0011,0010) block travels encrypted; ours stays off its slot after a rekey.
    block_start = protected.private_block(0x0011, "DICOMCRYPT 1").block_start
    assert rekeyed.private_block(0x0011, "DICOMCRYPT 1").block_start == block_start
    assert (0x00110010) not in rekeyed
    restored = decrypt_instance(rekeyed, keys=new_key, identity_keys=[identity_key]).dataset
    assert attribute_differences(original, restored) == []


@pytest.mark.parametrize("name", ["CT_small.dcm", "rtplan.dcm", "nested_priv_SQ.dcm"])
def test_deidentify_writes_the_bytes_it_wrote_with_deep_copies(name, monkeypatch):
    """Its element copies are independent_element_copy now (issue 14): same data set, same record."""
    import io

    import pydicom

    from dicomcrypt.dicom import confidentiality

    def written(ds: Dataset, **encoding: bool) -> bytes:
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, **encoding)
        return buffer.getvalue()

    results = []
    for copier in (None, copy.deepcopy):
        if copier is not None:
            monkeypatch.setattr(confidentiality, "independent_element_copy", copier)
        ds = read_quietly(sample(name))
        originals = deidentify(ds, Pseudonyms(b"s" * 32))
        results.append((written(ds), written(originals, implicit_vr=False, little_endian=True)))
    assert results[0] == results[1]
