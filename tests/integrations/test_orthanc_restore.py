"""A real Orthanc with the dicomcrypt plugin in restore mode: encrypted instances arrive by
C-STORE (DCMTK storescu) and REST, and Orthanc stores the real image; tampered ones are refused."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomcrypt import Key, encrypt_dataset
from dicomcrypt.cli.main import main
from dicomcrypt.codec.registry import DEFAULT_MODELS
from dicomcrypt.dicom import read_private_block
from dicomcrypt.dicom.private_block import PRIVATE_CREATOR, PRIVATE_GROUP
from helpers.corpus import fresh_copy, to_bytes
from helpers.orthanc import OrthancServer

pytestmark = [pytest.mark.peer, pytest.mark.slow]

# Small images keep the codec's cost low: grey 16-bit, grey from JPEG-LS, RGB.
IMAGES = ("CT_small.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb.dcm")


@pytest.fixture(scope="module")
def orthanc(orthanc_restore: OrthancServer) -> OrthancServer:
    """This module's Orthanc (conftest)."""
    return orthanc_restore


def encrypted(name: str, key: Key, mode: str = "lossless") -> tuple[pydicom.Dataset, pydicom.Dataset]:
    """(original, encrypted) for a fresh copy of a test image."""
    original = fresh_copy(name)
    return original, encrypt_dataset(original, key=key, mode=mode)


def tampered(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The same encrypted instance with one ciphertext byte flipped near the end."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    envelope = bytearray(block[0x10].value)
    envelope[-20] ^= 0x01
    block[0x10].value = bytes(envelope)
    return ds


def assert_stored_equals(server: OrthancServer, original: pydicom.Dataset) -> None:
    """Orthanc holds the instance, with the original pixels and no dicomcrypt block."""
    orthanc_id = server.find_instance(original.SOPInstanceUID)
    assert orthanc_id is not None, f"{original.SOPInstanceUID} not stored\n{server.log_tail()}"
    stored = pydicom.dcmread(io.BytesIO(server.instance_file(orthanc_id)))
    assert read_private_block(stored) is None
    assert stored.PatientName == original.PatientName
    assert (stored.Rows, stored.Columns) == (original.Rows, original.Columns)
    np.testing.assert_array_equal(stored.pixel_array, original.pixel_array)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("mode", ["lossless", "standard"])
def test_rest_upload_of_an_encrypted_instance_is_stored_restored(
    orthanc: OrthancServer, site_key: tuple[Key, Path], name: str, mode: str
) -> None:
    original, sealed = encrypted(name, site_key[0], mode)
    status, answer = orthanc.post_instance(to_bytes(sealed))
    assert status == 200 and answer["Status"] == "Success", answer
    assert_stored_equals(orthanc, original)


def test_storescu_of_encrypted_instances_stores_them_restored(
    orthanc: OrthancServer, site_key: tuple[Key, Path], tmp_path: Path
) -> None:
    pairs = [encrypted(name, site_key[0]) for name in IMAGES]
    paths = []
    for index, (_, sealed) in enumerate(pairs):
        paths.append(tmp_path / f"{index}.dcm")
        sealed.save_as(paths[-1], enforce_file_format=True)
    done = orthanc.store_scu(paths)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (done.stdout + done.stderr).count("Received Store Response (Success)") == len(paths)
    for original, _ in pairs:
        assert_stored_equals(orthanc, original)


def test_our_send_encrypts_on_the_fly_and_orthanc_stores_the_restored_instances(
    orthanc: OrthancServer, site_key: tuple[Key, Path], tmp_path: Path
) -> None:
    """`dicomcrypt send` (our SCU) encrypts plain files as it sends; Orthanc restores them."""
    originals = [fresh_copy(name) for name in IMAGES]
    study = tmp_path / "study"
    study.mkdir()
    for index, original in enumerate(originals):
        original.save_as(study / f"{index}.dcm", enforce_file_format=True)
    peer = f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    code = main(["send", "--key", str(site_key[1]), "--aet", "DICOMCRYPT", "--jobs", "1", "--no-progress",
                 "--mode", "lossless", peer, str(study)])
    assert code == 0, orthanc.log_tail()
    for original in originals:
        assert_stored_equals(orthanc, original)


def test_a_tampered_instance_is_refused_by_cstore_and_not_stored(
    orthanc: OrthancServer, site_key: tuple[Key, Path], tmp_path: Path
) -> None:
    original, sealed = encrypted("CT_small.dcm", site_key[0], "standard")
    path = tmp_path / "tampered.dcm"
    tampered(sealed).save_as(path, enforce_file_format=True)
    before = len(orthanc.instance_ids())
    done = orthanc.store_scu([path])
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Received Store Response (Error: CannotUnderstand)" in output
    assert orthanc.find_instance(original.SOPInstanceUID) is None
    assert len(orthanc.instance_ids()) == before
    assert "refused an instance: decryption failed" in orthanc.log_text()


def test_a_tampered_rest_upload_is_filtered_out_and_not_stored(
    orthanc: OrthancServer, site_key: tuple[Key, Path]
) -> None:
    original, sealed = encrypted("MR_small_jpeg_ls_lossless.dcm", site_key[0], "standard")
    before = len(orthanc.instance_ids())
    status, answer = orthanc.post_instance(to_bytes(tampered(sealed)))
    assert answer["Status"] == "FilteredOut", (status, answer)
    assert orthanc.find_instance(original.SOPInstanceUID) is None
    assert len(orthanc.instance_ids()) == before


def test_an_instance_for_an_unknown_key_is_refused(orthanc: OrthancServer, tmp_path: Path) -> None:
    original, sealed = encrypted("CT_small.dcm", Key.generate(), "standard")
    path = tmp_path / "other-key.dcm"
    sealed.save_as(path, enforce_file_format=True)
    done = orthanc.store_scu([path])
    assert done.returncode != 0
    assert orthanc.find_instance(original.SOPInstanceUID) is None
    assert "no key for key id" in orthanc.log_text()


def test_a_plain_instance_passes_through_unchanged(orthanc: OrthancServer) -> None:
    original = fresh_copy("MR_small.dcm")
    status, answer = orthanc.post_instance(to_bytes(original))
    assert answer["Status"] == "Success"
    stored = pydicom.dcmread(io.BytesIO(orthanc.instance_file(answer["ID"])))
    np.testing.assert_array_equal(stored.pixel_array, original.pixel_array)


def test_several_senders_at_once_every_instance_is_accounted_for(
    orthanc: OrthancServer, site_key: tuple[Key, Path], tmp_path: Path
) -> None:
    """Four storescu associations at once; two carry the same tampered instance among good ones."""
    counts_before = orthanc.get_json("/dicomcrypt/status")["counts"]
    senders, per_sender = 4, 4
    good: list[pydicom.Dataset] = []
    bad: list[pydicom.Dataset] = []
    batches: list[list[Path]] = []
    for sender in range(senders):
        batch = []
        for index in range(per_sender):
            original, sealed = encrypted("MR_small.dcm", site_key[0], "standard")
            if sender == 0 and index == 1:
                sealed, target = tampered(sealed), bad
            else:
                target = good
            target.append(original)
            batch.append(tmp_path / f"s{sender}-{index}.dcm")
            sealed.save_as(batch[-1], enforce_file_format=True)
        batches.append(batch)
    # The very same tampered bytes from a second association at the same time: refused twice.
    batches[1].insert(1, batches[0][1])

    results: dict[int, str] = {}

    def send(number: int) -> None:
        done = orthanc.store_scu(batches[number], calling_aet=f"SENDER{number}", halt=False)
        results[number] = done.stdout + done.stderr

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    outputs = "".join(results.values())
    assert len(results) == senders
    assert outputs.count("Received Store Response (Success)") == len(good)
    assert outputs.count("Received Store Response (Error: CannotUnderstand)") == 2
    for original in good:
        assert_stored_equals(orthanc, original)
    for original in bad:
        assert orthanc.find_instance(original.SOPInstanceUID) is None
    counts = orthanc.get_json("/dicomcrypt/status")["counts"]
    assert counts["decrypted"] - counts_before["decrypted"] == len(good)
    assert counts["refused"] - counts_before["refused"] == 2


def test_status_route_reports_version_mode_keys_and_counts(
    orthanc: OrthancServer, site_key: tuple[Key, Path]
) -> None:
    from dicomcrypt import __version__

    status = orthanc.get_json("/dicomcrypt/status")
    assert status["version"] == __version__
    assert status["mode"] == "restore"
    assert status["key_ids"] == [site_key[0].key_id]
    assert set(status["models_loaded"]) == set(DEFAULT_MODELS.values())
    assert {"handled", "decrypted", "refused", "passed_through"} <= set(status["counts"])
    code, _ = orthanc.request("POST", "/dicomcrypt/status", b"{}", content_type="application/json")
    assert code == 405


def test_models_are_loaded_once_per_orthanc_process(orthanc: OrthancServer, site_key: tuple[Key, Path]) -> None:
    """However many instances went through, each model was loaded once (at startup)."""
    original, sealed = encrypted("CT_small.dcm", site_key[0], "lossless")
    assert orthanc.post_instance(to_bytes(sealed))[1]["Status"] == "Success"
    log = orthanc.log_text()
    assert log.count(f"loaded model {DEFAULT_MODELS[1]}") == 1, log
    assert log.count(f"loaded model {DEFAULT_MODELS[3]}") == 1
    assert orthanc.get_json("/dicomcrypt/status")["counts"]["decrypted"] >= 1


def test_pending_refusals_are_counted_per_content() -> None:
    """Two associations sending identical bad bytes at once each get their refusal."""
    from dicomcrypt.integrations.orthanc_plugin import _PendingRefusals

    pending = _PendingRefusals()
    pending.add(b"same", 0xC001)
    pending.add(b"same", 0xC001)
    pending.add(b"other", 0xC002)
    assert [pending.pop(b"same"), pending.pop(b"same"), pending.pop(b"same")] == [0xC001, 0xC001, 0]
    assert pending.pop(b"other") == 0xC002
    assert pending.pop(b"never refused") == 0
