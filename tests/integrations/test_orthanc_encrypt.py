"""A real Orthanc with the dicomcrypt plugin in encrypt mode: plain instances arriving by C-STORE
or REST are stored encrypted (no plaintext pixels at rest), and our decrypt restores them exactly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomcrypt import Key, KeyRing, decrypt_dataset
from dicomcrypt.dicom import read_private_block
from helpers.corpus import fresh_copy, read_quietly, sample, to_bytes
from helpers.orthanc import OrthancServer, start_orthanc

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture(scope="module")
def orthanc(orthanc_encrypt: OrthancServer) -> OrthancServer:
    """This module's Orthanc (conftest)."""
    return orthanc_encrypt


def stored(server: OrthancServer, sop_instance_uid: str) -> tuple[bytes, pydicom.Dataset]:
    orthanc_id = server.find_instance(sop_instance_uid)
    assert orthanc_id is not None, f"{sop_instance_uid} not stored\n{server.log_tail()}"
    data = server.instance_file(orthanc_id)
    return data, pydicom.dcmread(io.BytesIO(data))


def assert_encrypted_at_rest(data: bytes, ds: pydicom.Dataset, original: pydicom.Dataset, key: Key) -> None:
    """No plaintext pixels in what Orthanc stores; our decrypt gives them back exactly."""
    info = read_private_block(ds)
    assert info is not None and info.key_ids == (key.key_id,)
    plain_pixels = original.pixel_array.tobytes()
    assert plain_pixels[:4096] not in data  # not even a row's worth of plaintext pixels
    assert ds.PixelData != original.PixelData
    restored = decrypt_dataset(ds, keys=KeyRing([key]))
    np.testing.assert_array_equal(restored.pixel_array, original.pixel_array)
    assert restored.SOPInstanceUID == original.SOPInstanceUID


def test_storescu_of_plain_instances_is_stored_encrypted(
    orthanc: OrthancServer, site_key: tuple[Key, Path], tmp_path: Path
) -> None:
    originals = [fresh_copy("CT_small.dcm"), fresh_copy("SC_rgb.dcm")]
    paths = []
    for index, original in enumerate(originals):
        paths.append(tmp_path / f"{index}.dcm")
        original.save_as(paths[-1], enforce_file_format=True)
    done = orthanc.store_scu(paths)
    assert done.returncode == 0, done.stdout + done.stderr
    for original in originals:
        data, ds = stored(orthanc, original.SOPInstanceUID)
        assert_encrypted_at_rest(data, ds, original, site_key[0])


def test_rest_upload_of_a_plain_instance_is_stored_encrypted(
    orthanc: OrthancServer, site_key: tuple[Key, Path]
) -> None:
    original = fresh_copy("MR_small_jpeg_ls_lossless.dcm")
    status, answer = orthanc.post_instance(to_bytes(original))
    assert status == 200 and answer["Status"] == "Success", answer
    data, ds = stored(orthanc, original.SOPInstanceUID)
    assert_encrypted_at_rest(data, ds, original, site_key[0])


def test_a_non_image_object_is_stored_unchanged(orthanc: OrthancServer) -> None:
    report = read_quietly(sample("test-SR.dcm"))
    status, answer = orthanc.post_instance(to_bytes(report))
    assert answer["Status"] == "Success", answer
    data, ds = stored(orthanc, report.SOPInstanceUID)
    assert read_private_block(ds) is None
    assert ds.ContentSequence == report.ContentSequence


def test_an_already_encrypted_instance_is_kept_as_sent(
    orthanc: OrthancServer, site_key: tuple[Key, Path]
) -> None:
    from dicomcrypt import encrypt_dataset

    original = fresh_copy("MR_small.dcm")
    sealed = encrypt_dataset(original, key=site_key[0], mode="standard")
    assert orthanc.post_instance(to_bytes(sealed))[1]["Status"] == "Success"
    _, ds = stored(orthanc, original.SOPInstanceUID)
    assert read_private_block(ds).envelope == read_private_block(sealed).envelope


def test_status_reports_encrypt_mode_and_counts(orthanc: OrthancServer, site_key: tuple[Key, Path]) -> None:
    before = orthanc.get_json("/dicomcrypt/status")["counts"]["encrypted"]
    assert orthanc.post_instance(to_bytes(fresh_copy("MR_small.dcm")))[1]["Status"] == "Success"
    status = orthanc.get_json("/dicomcrypt/status")
    assert status["mode"] == "encrypt"
    assert status["encrypt_mode"] == "lossless"
    assert status["encrypt_key_id"] == site_key[0].key_id
    assert status["counts"]["encrypted"] == before + 1


def test_a_bad_configuration_stops_orthanc(tmp_path: Path, site_key: tuple[Key, Path]) -> None:
    """Fail closed: Orthanc must not run, storing plaintext, when the hook cannot start. The
    script generator refuses a missing key itself (tests/cli/test_orthanc_script.py), so this is a
    key file that went away after the configuration was generated."""
    bad = {"Mode": "encrypt", "KeyFiles": [str(tmp_path / "missing.key")]}
    with pytest.raises(RuntimeError, match="exited") as failure:
        server = start_orthanc(
            tmp_path / "bad", dicomcrypt={"Mode": "encrypt", "KeyFiles": [str(site_key[1])]},
            extra_config={"DicomCrypt": bad},
        )
        server.stop()
    assert "dicomcrypt: not started: key file" in str(failure.value)


def anonymize(server: OrthancServer, orthanc_id: str, request: dict) -> pydicom.Dataset:
    import json

    status, body = server.request(
        "POST", f"/instances/{orthanc_id}/anonymize", json.dumps(request).encode(), content_type="application/json"
    )
    assert status == 200, body[:300]
    return pydicom.dcmread(io.BytesIO(body))


def test_what_orthanc_anonymisation_does_to_an_encrypted_instance(
    orthanc: OrthancServer, site_key: tuple[Key, Path]
) -> None:
    """docs/integrations.md: by default the block is dropped; kept private tags still fail to
    decrypt because anonymisation gives new UIDs, which the envelope is bound to; keeping the
    UIDs too keeps the instance decryptable."""
    from dicomcrypt.errors import DecryptionError

    original = fresh_copy("MR_small.dcm")
    status, answer = orthanc.post_instance(to_bytes(original))
    orthanc_id = answer["ID"]

    dropped = anonymize(orthanc, orthanc_id, {})
    assert read_private_block(dropped) is None

    kept = anonymize(orthanc, orthanc_id, {"KeepPrivateTags": True})
    assert read_private_block(kept) is not None
    assert kept.SOPInstanceUID != original.SOPInstanceUID
    with pytest.raises(DecryptionError):
        decrypt_dataset(kept, keys=KeyRing([site_key[0]]))

    uids = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]
    same_uids = anonymize(orthanc, orthanc_id, {"KeepPrivateTags": True, "Keep": uids, "Force": True})
    restored = decrypt_dataset(same_uids, keys=KeyRing([site_key[0]]))
    np.testing.assert_array_equal(restored.pixel_array, original.pixel_array)
    assert restored.PatientName != original.PatientName
