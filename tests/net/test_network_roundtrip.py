"""Our ``send`` -> our ``serve``: a study of several modalities encrypted on the fly, restored
and filed by the receiver, compared value by value with what was sent; the autoencoder modes
over the wire; server TLS and mutual TLS between the pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from dicomcrypt import quality
from dicomcrypt.cli.main import main
from dicomcrypt.dicom import read_private_block
from dicomcrypt.files import read_dicom, write_dicom_atomic
from dicomcrypt.net.address import parse_peer
from dicomcrypt.net.scu import send
from dicomcrypt.settings import EncryptionSettings
from dicomcrypt.net.tls import client_context, server_context
from helpers.corpus import sample
from helpers.study import derived_copy, pixels, write_study

pytestmark = pytest.mark.slow  # our sender to our receiver: whole studies, TLS, the autoencoder

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicom"
WG04 = SAMPLES / "wg04-study"


def _filed(out: Path) -> dict[str, pydicom.Dataset]:
    """What the receiver filed under ``out`` (quarantine excluded), by SOP Instance UID."""
    found = {}
    for path in out.rglob("*.dcm"):
        if "quarantine" not in path.relative_to(out).parts:
            ds = read_dicom(path)
            found[str(ds.SOPInstanceUID)] = ds
    return found


@pytest.fixture
def study(tmp_path: Path) -> tuple[str, dict[str, Path]]:
    """MR, NM, CR and US (shrunk, native), an Enhanced MR multi-frame kept in JPEG-LS, and an
    SR: six instances of one study."""
    study_uid = generate_uid()
    folder = tmp_path / "study"
    files = write_study(
        folder,
        {WG04 / "MR2_J2KR.dcm": 4, WG04 / "NM1_JPLL.dcm": 4, WG04 / "RG3_J2KR.dcm": 8, WG04 / "US1_J2KR.dcm": 4},
        study_uid=study_uid,
    )
    for name in ("emri_small_jpeg_ls_lossless.dcm", "test-SR.dcm"):  # kept in their own syntax
        ds = read_dicom(SAMPLES / "other" / name)
        ds.StudyInstanceUID = study_uid
        write_dicom_atomic(ds, folder / name)
        files[str(ds.SOPInstanceUID)] = folder / name
    return study_uid, files


def test_a_study_of_several_modalities_is_restored_exactly(study, start_receiver, site_key_file, tmp_path, capsys):
    study_uid, files = study
    receiver = start_receiver()
    peer = f"RECEIVER@127.0.0.1:{receiver.port}"
    code = main(["send", "--key", str(site_key_file), "--mode", "standard", "--jobs", "1", "--associations", "2",
                 "--aet", "SENDER", peer, str(tmp_path / "study")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"study {study_uid} [CR,MR,NM,SR,US]: 6 instances, 6 arrived (5 encrypted standard), " \
           "1 non-image passed through, 0 failed" in out

    counts = receiver.studies()[study_uid]
    assert counts.stored == 6 and counts.refused == 0
    filed = _filed(receiver.config.out)
    assert set(filed) == set(files)
    for uid, path in files.items():
        original, got = read_dicom(path), filed[uid]
        assert read_private_block(got) is None
        assert got.StudyInstanceUID == study_uid and got.Modality == original.Modality
        if "PixelData" in original:
            np.testing.assert_array_equal(pixels(got), pixels(original), err_msg=path.name)
            assert got.PhotometricInterpretation == original.PhotometricInterpretation
        else:
            assert got == original  # the SR passed through untouched


def test_autoencoder_lossless_and_lossy_over_the_network(tmp_path: Path, start_receiver, site_key):
    """One MR in lossless mode (every pixel back) and one CT in lossy mode (a derived image)."""
    receiver = start_receiver()
    peer = parse_peer(f"RECEIVER@127.0.0.1:{receiver.port}")
    study_uid = generate_uid()
    mr = derived_copy(read_dicom(WG04 / "MR2_J2KR.dcm"), study_uid=study_uid, shrink=4)  # 256x256
    ct = derived_copy(read_dicom(sample("CT_small.dcm")), study_uid=study_uid)  # 128x128
    write_dicom_atomic(mr, tmp_path / "lossless" / "mr.dcm")
    write_dicom_atomic(ct, tmp_path / "lossy" / "ct.dcm")

    for mode in ("lossless", "lossy"):
        settings = EncryptionSettings.build(key=site_key, mode=mode)
        report = send([tmp_path / mode], peer, calling_aet="SENDER", settings=settings)
        assert report.all_arrived, report.summary()
        assert [r.mode for r in report.results] == [mode]

    filed = _filed(receiver.config.out)
    assert len(filed) == 2
    restored_mr = filed[str(mr.SOPInstanceUID)]
    np.testing.assert_array_equal(pixels(restored_mr), pixels(mr))

    (restored_ct,) = (ds for uid, ds in filed.items() if uid != str(mr.SOPInstanceUID))
    assert restored_ct.SOPInstanceUID != ct.SOPInstanceUID  # lossy: a derived instance
    assert restored_ct.LossyImageCompression == "01"
    assert restored_ct.SourceImageSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    q = quality.compare(pixels(ct), pixels(restored_ct),
                        rescale=(float(ct.RescaleSlope), float(ct.RescaleIntercept)))
    assert not q.exact
    assert q.psnr_db > 35 and q.ssim > 0.9, q  # measured: 39.4 dB, SSIM 0.956


@pytest.mark.parametrize("mutual", [False, True], ids=["server-tls", "mutual-tls"])
def test_tls_between_our_pair(tmp_path: Path, start_receiver, site_key, pki, mutual):
    ca = pki.ca if mutual else None
    receiver = start_receiver(ssl_context=server_context(pki.server_cert, pki.server_key, ca))
    peer = parse_peer(f"RECEIVER@127.0.0.1:{receiver.port}")
    source = read_dicom(sample("MR_small.dcm"))
    write_dicom_atomic(source, tmp_path / "in" / "mr.dcm")
    client = client_context(pki.ca, pki.client_cert, pki.client_key) if mutual else client_context(pki.ca)

    settings = EncryptionSettings.build(key=site_key, mode="standard")
    report = send([tmp_path / "in"], peer, calling_aet="SENDER", settings=settings, ssl_context=client)
    assert report.all_arrived, report.summary()
    (got,) = _filed(receiver.config.out).values()
    np.testing.assert_array_equal(pixels(got), pixels(source))

    if mutual:  # a client certificate from another CA, and no certificate at all, are refused
        from dicomcrypt.errors import AssociationError

        for refused in (client_context(pki.ca, pki.rogue_client_cert, pki.rogue_client_key), client_context(pki.ca)):
            with pytest.raises(AssociationError):
                send([tmp_path / "in"], peer, calling_aet="SENDER", settings=settings,
                     ssl_context=refused, retries=0)
