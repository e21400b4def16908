"""The demo's per-file report: each lossy row shows what JPEG 2000 needs for the same PSNR."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt import dicom, roundtrip
from dicomcrypt.crypto import Key
from dicomcrypt.evaluation import anchors


@pytest.mark.slow
def test_lossy_rows_carry_the_jpeg2000_size_for_their_psnr(tmp_path: Path) -> None:
    shutil.copyfile(get_testdata_file("CT_small.dcm"), tmp_path / "CT_small.dcm")
    lossy, lossless = roundtrip.run(tmp_path, key=Key.generate(), modes=("lossy", "lossless"))
    assert lossy.mode == "lossy" and lossy.quality is not None and not lossy.quality.exact
    assert lossy.jpeg2000_bytes is not None and 0 < lossy.jpeg2000_bytes < lossy.original_bytes
    frames, _ = dicom.read_frames(pydicom.dcmread(tmp_path / "CT_small.dcm"))
    again = anchors.smallest_reaching(anchors.prepare(frames), anchors.JPEG2000, lossy.quality.psnr_db)
    assert again.nbytes == lossy.jpeg2000_bytes and again.psnr_db >= lossy.quality.psnr_db
    line = roundtrip.format_row(lossy)
    assert f"JPEG 2000 same PSNR {lossy.jpeg2000_bytes / 1e3:.1f} kB" in line and "x)" in line
    assert lossless.quality is not None and lossless.quality.exact and lossless.jpeg2000_bytes is None
    assert "JPEG 2000" not in roundtrip.format_row(lossless)
