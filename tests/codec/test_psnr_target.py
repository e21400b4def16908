"""``--psnr``: the lossy wavelet codec searches its step for a PSNR target instead of a quality."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt import dicom
from dicomcrypt.cli.main import main
from dicomcrypt.crypto import Key
from dicomcrypt.errors import InvalidInputError
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance
from dicomcrypt.quality import compare
from dicomcrypt.settings import EncryptionSettings

KEY = Key.from_bytes(bytes(range(32)))


def _restored_psnr(name: str, psnr: float) -> tuple[float, float]:
    original = pydicom.dcmread(get_testdata_file(name))
    sealed = encrypt_instance(original, key=KEY, mode="lossy", psnr=psnr)
    restored = decrypt_instance(sealed.dataset, keys=[KEY]).dataset
    before, _ = dicom.read_frames(original)
    after, _ = dicom.read_frames(restored)
    return compare(before, after).psnr_db, sealed.metrics["pixels_bytes"]


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb.dcm"])
def test_the_restored_image_reaches_the_target_just_above_it(name):
    reached = {}
    for target in (40.0, 48.0):
        psnr, size = _restored_psnr(name, target)
        assert target <= psnr <= target + 1.0, (name, target, psnr)
        reached[target] = size
    assert reached[40.0] < reached[48.0]


def test_a_target_the_codec_cannot_reach_is_refused_with_the_frame():
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    with pytest.raises(InvalidInputError, match="frame 0: .*even at quality 100; use the lossless mode"):
        encrypt_instance(original, key=KEY, mode="lossy", psnr=100.0)


@pytest.mark.parametrize(("psnr", "quality", "message"), [
    (45.0, 60, "a quality or a PSNR target, not both"),
    (10.0, None, "PSNR target 10.0: expected a number of dB from 20 to 100"),
    ("45", None, "PSNR target '45'"),
])
def test_bad_targets_are_refused_when_settings_are_built(psnr, quality, message):
    with pytest.raises(InvalidInputError, match=message):
        EncryptionSettings.build(key=KEY, mode="lossy", quality=quality, psnr=psnr)


def test_an_autoencoder_model_cannot_take_a_target():
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    with pytest.raises(InvalidInputError, match="needs the wavelet codec; model ps-grey@2 is an autoencoder"):
        encrypt_instance(original, key=KEY, mode="lossy", model="ps-grey@2", psnr=45.0)


def test_the_cli_takes_psnr_and_refuses_it_beside_quality(tmp_path, capsys):
    key = tmp_path / "site.key"
    assert main(["keygen", "--out", str(key)]) == 0
    source = tmp_path / "in.dcm"
    source.write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read())
    assert main(["encrypt", "--key", str(key), "--lossy", "--psnr", "44", str(source), str(tmp_path / "enc")]) == 0
    assert main(["decrypt", "--key", str(key), str(tmp_path / "enc"), str(tmp_path / "dec")]) == 0
    restored = tmp_path / "dec"  # one file in, one file out
    before = pydicom.dcmread(source).pixel_array
    after = pydicom.dcmread(restored).pixel_array
    assert 44 <= compare(before[None, ..., None], after[None, ..., None]).psnr_db <= 45
    capsys.readouterr()
    assert main(["encrypt", "--key", str(key), "--lossy", "--psnr", "44", "--quality", "60", str(source),
                 str(tmp_path / "both")]) != 0
    assert "a quality or a PSNR target, not both" in capsys.readouterr().err
    assert np.array_equal(pydicom.dcmread(source).pixel_array, before)  # the input is untouched
