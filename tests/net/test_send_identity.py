"""``dicomcrypt send --protect-identity``: the identity travels encrypted (PS3.15 Encrypted
Attributes) with the pixels; the receiver restores the pixels exactly and files a de-identified
instance, whose identity only the holder of the RSA key restores.

``standard`` mode and small images: the settings' path to the sealing workers is tested here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.corpus import TEST_FILES_DIR, read_quietly
from helpers.identity import make_identity
from helpers.store_clients import good_files
from net.conftest import free_port

from dicomcrypt.cli.main import main
from dicomcrypt.crypto.cms import IdentityKey
from dicomcrypt.dicom import has_pixel_data, read_frames, read_private_block
from dicomcrypt.dicom.encrypted_attributes import has_encrypted_attributes
from dicomcrypt.files import read_dicom
from dicomcrypt.identity_protection import restore_identity


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """Two instances of one study and one patient."""
    folder = tmp_path / "study"
    folder.mkdir()
    for suffix in ("1", "2"):
        ds = read_quietly(TEST_FILES_DIR / "CT_small.dcm")
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{suffix}"
        ds.save_as(folder / f"{suffix}.dcm", enforce_file_format=True)
    return folder


def test_send_protect_identity_files_a_deidentified_instance_that_restores(
    tmp_path: Path, study: Path, site_key_file: Path, start_receiver, capsys
):
    identity = make_identity(tmp_path / "pki", "restorer")
    receiver = start_receiver()
    code = main(["send", "--key", str(site_key_file), "--mode", "standard", "--protect-identity",
                 "--identity-cert", str(identity.cert), "--jobs", "2", "--aet", "SENDER",
                 f"RECEIVER@127.0.0.1:{receiver.port}", str(study)])
    summary = capsys.readouterr().out
    assert code == 0, summary

    originals = {str(ds.SOPInstanceUID): ds for ds in map(read_dicom, sorted(study.iterdir()))}
    filed = [read_dicom(path) for path in good_files(tmp_path / "received")]
    assert len(filed) == len(originals)
    assert all(has_pixel_data(ds) for ds in filed)
    # filed de-identified, one study for both (one uid_secret across the sealing workers)
    assert len({str(ds.StudyInstanceUID) for ds in filed}) == 1
    for ds in filed:
        assert read_private_block(ds) is None  # pixels restored by the receiver
        assert has_encrypted_attributes(ds)
        assert str(ds.SOPInstanceUID) not in originals
        assert str(ds.StudyInstanceUID) != str(next(iter(originals.values())).StudyInstanceUID)
        assert ds.PatientName != next(iter(originals.values())).PatientName

        restore_identity(ds, [IdentityKey.load(identity.key)])
        original = originals[str(ds.SOPInstanceUID)]
        assert ds.PatientName == original.PatientName and ds.StudyInstanceUID == original.StudyInstanceUID
        np.testing.assert_array_equal(read_frames(ds)[0], read_frames(original)[0])


def test_send_protect_identity_protects_non_images_too(tmp_path: Path, site_key_file: Path, start_receiver, capsys):
    """An RT Plan has no pixels to encrypt, but its identity must not leave in clear either."""
    identity = make_identity(tmp_path / "pki", "restorer")
    receiver = start_receiver()
    plan_file = TEST_FILES_DIR / "rtplan.dcm"
    code = main(["send", "--key", str(site_key_file), "--protect-identity", "--identity-cert", str(identity.cert),
                 "--jobs", "1", f"RECEIVER@127.0.0.1:{receiver.port}", str(plan_file)])
    assert code == 0, capsys.readouterr().out
    (filed,) = [read_dicom(path) for path in good_files(tmp_path / "received")]
    original = read_quietly(plan_file)
    assert has_encrypted_attributes(filed) and filed.PatientName != original.PatientName
    restore_identity(filed, [IdentityKey.load(identity.key)])
    assert filed.PatientName == original.PatientName and filed.SOPInstanceUID == original.SOPInstanceUID


def test_send_identity_options_are_checked_before_connecting(tmp_path: Path, study: Path, capsys):
    identity = make_identity(tmp_path / "pki", "restorer")
    peer = f"X@127.0.0.1:{free_port()}"
    assert main(["send", "--protect-identity", "--plain", peer, str(study)]) == 2
    assert "--protect-identity and --identity-cert go together" in capsys.readouterr().err
    assert main(["send", "--protect-identity", "--identity-cert", str(identity.cert), "--plain", peer, str(study)]) == 3
    assert "--protect-identity needs --key or --recipient" in capsys.readouterr().err
