"""An encrypted multi-frame object travels with its RLE placeholder when the peer takes RLE,
and decompressed, under the same SOP Instance UID its envelope is bound to, when it does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from dicomcrypt import KeyRing, decrypt_dataset
from dicomcrypt.cli.main import main
from dicomcrypt.dicom import read_frames, read_private_block
from dicomcrypt.files import read_dicom
from helpers.dciodvfy import require_tool
from net.conftest import dcmtk_env, free_port, wait_for_port

pytestmark = [pytest.mark.peer]


@pytest.mark.parametrize(("options", "expected"), [((), ExplicitVRLittleEndian), (("+xa",), RLELossless)],
                         ids=["uncompressed-only-peer", "accept-all-peer"])
def test_send_encrypts_a_multi_frame_object_to_storescp(options, expected, tmp_path: Path, background, site_key,
                                                         site_key_file, capsys):
    exe = require_tool("storescp")
    out, study = tmp_path / "storescp", tmp_path / "study"
    out.mkdir()
    study.mkdir()
    source = Path(get_testdata_file("emri_small_jpeg_ls_lossless.dcm"))  # 10 frames
    shutil.copyfile(source, study / source.name)
    port = free_port()
    background([exe, "-aet", "STORESCP", "--output-directory", str(out), *options, str(port)], env=dcmtk_env())
    wait_for_port(port)

    code = main(["send", "--key", str(site_key_file), "--aet", "SENDER", "--mode", "standard", "--jobs", "1",
                 f"STORESCP@127.0.0.1:{port}", str(study)])
    assert code == 0, capsys.readouterr().out

    (stored,) = [read_dicom(p) for p in out.iterdir() if p.is_file()]
    original = read_dicom(source)
    assert stored.SOPInstanceUID == original.SOPInstanceUID  # never renamed on the way
    assert stored.file_meta.TransferSyntaxUID == expected
    assert read_private_block(stored) is not None
    restored = decrypt_dataset(stored, keys=KeyRing([site_key]))
    np.testing.assert_array_equal(read_frames(restored)[0], read_frames(original)[0])
