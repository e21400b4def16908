"""What ``serve`` files for a restored instance: the original's lossless transfer syntax (or the
chosen one), bit-exact, and for a lossy restore a derived UID that is the same on every re-send,
so the sender's retry is a duplicate and not a second image. DCMTK ``storescu`` sends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless

from dicomcrypt import dicom
from dicomcrypt.files import read_dicom, write_dicom_atomic
from dicomcrypt.pipeline import encrypt_instance
from dicomcrypt.net.address import Peer
from helpers.dciodvfy import require_tool
from helpers.store_clients import dcmtk_env, good_files, storescu
from net.conftest import free_port, wait_for_port
from helpers.waiting import wait_until

pytestmark = [pytest.mark.peer]


def _encrypted(name: str, key, folder: Path, mode: str = "standard") -> tuple[Path, object]:
    original = read_dicom(get_testdata_file(name))
    path = folder / f"{name}.{mode}.dcm"
    write_dicom_atomic(encrypt_instance(original, key=key, mode=mode).dataset, path)
    return path, original


@pytest.mark.parametrize(("output_syntax", "expected"), [("original", JPEG2000Lossless), ("jpeg-ls", JPEGLSLossless)])
def test_serve_files_restored_instances_in_the_output_syntax(output_syntax, expected, start_receiver, site_key,
                                                              tmp_path):
    rx = start_receiver(output_syntax=output_syntax)
    path, original = _encrypted("MR_small_jp2klossless.dcm", site_key, tmp_path)
    done = storescu(rx.port, [path])
    assert done.returncode == 0, done.stdout + done.stderr
    (filed,) = good_files(rx.config.out)
    restored = read_dicom(filed)
    assert restored.file_meta.TransferSyntaxUID == expected
    np.testing.assert_array_equal(dicom.read_frames(restored)[0], dicom.read_frames(original)[0])


def test_a_lossy_instance_sent_twice_is_filed_once_under_a_derived_uid(start_receiver, site_key, tmp_path):
    rx = start_receiver(uid_root="1.2.826.0.1.3680043.10.999")
    path, original = _encrypted("CT_small.dcm", site_key, tmp_path, mode="lossy")
    for _ in range(2):  # the sender retries: the same instance again
        done = storescu(rx.port, [path])
        assert done.returncode == 0, done.stdout + done.stderr
    (filed,) = good_files(rx.config.out)
    restored = read_dicom(filed)
    assert restored.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.999.")
    assert filed.name == f"{restored.SOPInstanceUID}.dcm"
    assert restored.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    counts = rx.studies()[str(original.StudyInstanceUID)]
    assert counts.refused == 0


@pytest.mark.parametrize(("options", "expected"), [((), ExplicitVRLittleEndian), (("+xa",), JPEG2000Lossless)],
                         ids=["uncompressed-only-pacs", "accept-all-pacs"])
def test_a_gateway_forwards_in_the_output_syntax_or_decompressed(options, expected, start_receiver, background,
                                                                  site_key, tmp_path):
    """A PACS that refuses the restored instance's lossless syntax gets it decompressed, same UID."""
    pacs, port = tmp_path / "pacs", free_port()
    pacs.mkdir()
    background([require_tool("storescp"), "-aet", "PACS", "-od", str(pacs), *options, str(port)], env=dcmtk_env())
    wait_for_port(port)
    rx = start_receiver(out=None, forward=Peer("PACS", "127.0.0.1", port), quarantine=tmp_path / "q",
                        spool=tmp_path / "spool", forward_retry_first=0.1, forward_retry_max=0.5)
    sent = [_encrypted(name, site_key, tmp_path) for name in ("MR_small_jp2klossless.dcm", "CT_small.dcm")]
    done = storescu(rx.port, [path for path, _ in sent])
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: len(list(pacs.iterdir())) == len(sent), what="the forward queue delivered both")
    arrived = {str(ds.SOPInstanceUID): ds for ds in (read_dicom(p) for p in pacs.iterdir())}
    assert set(arrived) == {str(original.SOPInstanceUID) for _, original in sent}
    for _, original in sent:
        forwarded = arrived[str(original.SOPInstanceUID)]
        if original.file_meta.TransferSyntaxUID == JPEG2000Lossless:
            assert forwarded.file_meta.TransferSyntaxUID == expected
        np.testing.assert_array_equal(dicom.read_frames(forwarded)[0], dicom.read_frames(original)[0])
