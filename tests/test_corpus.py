"""Every image file of pydicom's test files and pydicom-data, and sample_dicom/, end to end.

For each file: encrypt, write DICOM bytes, check that DCMTK's dcmdump reads them and that
dicom3tools' dciodvfy reports no error the original did not have, restore, and compare the
pixels value by value. The standard mode runs over everything (it is fast and exercises the
DICOM layer); the autoencoder's lossless mode runs over every file up to a size that keeps the
suite quick, and the lossy mode over a few, with PSNR/SSIM checked against floors.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from helpers.corpus import image_files, read_quietly, to_bytes
from helpers.dciodvfy import new_errors, require_tool

from dicomcrypt import dicom
from dicomcrypt.crypto import Key
from dicomcrypt.errors import DicomCryptError
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance
from dicomcrypt.quality import compare

pytestmark = pytest.mark.slow  # corpus-wide round trips

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_dicom"
KEY = Key.from_bytes(bytes(range(32)))

# Files whose pixel data pydicom itself cannot decode (see tests/dicom/test_pixels.py for why
# each one fails): encrypting them must fail with one clear error and write nothing.
UNDECODABLE = {
    "JPEG-lossy.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
    "MR_truncated.dcm",
    "badVR.dcm",
    "meta_missing_tsyntax.dcm",
    "nested_priv_SQ.dcm",
    "emri_small_jpeg_2k_lossless_too_short.dcm",
}
# Files pydicom can read but not write back, even untouched: encrypting them cannot produce a file.
UNWRITABLE = {
    "SC_rgb_jpeg.dcm": "declares Explicit VR but its body is Implicit VR; pydicom cannot write it back",
}
# Largest image (pixels x frames x samples) the autoencoder's lossless mode is run on in CI.
LOSSLESS_PIXEL_LIMIT = 1_100_000




def _size(ds: pydicom.Dataset) -> int:
    if "Rows" not in ds or "Columns" not in ds:
        return 0
    return int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.get("SamplesPerPixel", 1))


def _round_trip(path: Path, mode: str, tmp_path: Path) -> tuple[np.ndarray, np.ndarray, str, pydicom.Dataset]:
    original = read_quietly(path)
    sealed = encrypt_instance(original, key=KEY, mode=mode)
    encrypted_path = tmp_path / "encrypted.dcm"
    encrypted_path.write_bytes(to_bytes(sealed.dataset))
    if sealed.action == "passed through":
        assert not dicom.has_pixel_data(original)
        assert sealed.dataset == original
        return np.zeros(0), np.zeros(0), "passed through", sealed.dataset
    encrypted = pydicom.dcmread(encrypted_path)
    restored = pydicom.dcmread(io.BytesIO(to_bytes(decrypt_instance(encrypted, keys=[KEY]).dataset)))
    return dicom.read_frames(original)[0], dicom.read_frames(restored)[0], sealed.mode, encrypted


def _corpus() -> list[Path]:
    files = list(image_files()) + sorted(SAMPLE_DIR.rglob("*.dcm"))
    return [p for p in files if read_quietly(p).get("SOPClassUID") is not None]


CORPUS = _corpus()


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_standard_mode_is_exact_and_valid_for_every_file(path, tmp_path):
    if path.name in UNDECODABLE:
        with pytest.raises(DicomCryptError):
            encrypt_instance(read_quietly(path), key=KEY, mode="standard")
        return
    if path.name in UNWRITABLE:
        pytest.skip(UNWRITABLE[path.name])
    before, after, _, encrypted = _round_trip(path, "standard", tmp_path)
    np.testing.assert_array_equal(after, before)
    dcmdump = require_tool("dcmdump")
    run = subprocess.run([dcmdump, "-q", str(tmp_path / "encrypted.dcm")], capture_output=True)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    require_tool("dciodvfy")
    # File meta (group 0002) is rewritten by pydicom from the dataset, so it is not compared.
    added = new_errors(_dciodvfy_baseline(path), tmp_path / "encrypted.dcm", ignore=["(0x0002,"])
    assert not added, sorted(added)


def _dciodvfy_baseline(path: Path) -> Path | pydicom.Dataset:
    """What dciodvfy can read of the original: it cannot inflate Deflated Explicit VR files."""
    original = read_quietly(path)
    if original.file_meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return path
    original.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return original


LOSSLESS = [
    p
    for p in CORPUS
    if p.name not in UNDECODABLE and p.name not in UNWRITABLE and _size(read_quietly(p)) <= LOSSLESS_PIXEL_LIMIT
]


@pytest.mark.parametrize("path", LOSSLESS, ids=lambda p: p.name)
def test_lossless_mode_restores_every_pixel(path, tmp_path):
    before, after, mode, _ = _round_trip(path, "lossless", tmp_path)
    assert mode in ("lossless", "standard", "passed through")
    np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize(
    "name, ssim_floor, psnr_floor",
    # Regression floors a little under what the shipped models measure (docs/models.md); the
    # targets to beat belong to the model work, not to this test.
    [
        ("CT_small.dcm", 0.93, 36.0),
        ("MR_small.dcm", 0.9, 30.0),
        ("US1_UNCR.dcm", 0.72, 18.5),
        ("emri_small.dcm", 0.85, 25.0),
    ],
)
def test_lossy_mode_quality_floors(name, ssim_floor, psnr_floor, tmp_path):
    path = next((p for p in CORPUS if p.name == name), None)
    if path is None:
        pytest.skip(f"{name} not installed")
    before, after, mode, _ = _round_trip(path, "lossy", tmp_path)
    assert mode == "lossy"
    quality = compare(before, after)
    assert quality.ssim >= ssim_floor and quality.psnr_db >= psnr_floor, quality
