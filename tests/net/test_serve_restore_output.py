"""What ``serve`` files for a restored instance: the original's lossless transfer syntax (or the
chosen one), bit-exact, and for a lossy restore a derived UID that is the same on every re-send,
so the sender's retry is a duplicate and not a second image. DCMTK ``storescu`` sends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from dicomcrypt import dicom
from dicomcrypt.files import read_dicom, write_dicom_atomic
from dicomcrypt.pipeline import encrypt_instance
from helpers.store_clients import good_files, storescu

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
