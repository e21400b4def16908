"""Evaluation on small real files: reconstruction figures, Table 6 rows, Figure 6 panels, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt import quality
from dicomcrypt.codec.registry import DEFAULT_MODELS, load_model
from dicomcrypt.crypto import Key
from dicomcrypt.errors import InvalidInputError, UnsupportedImageError
from dicomcrypt.evaluation.evaluate import evaluate_file, select_frames
from dicomcrypt.evaluation.figure import figure6_png
from dicomcrypt.evaluation.report import Skipped, build_report, to_markdown, write_report
from dicomcrypt.noise import NOISE_KINDS

KEY = Key.from_bytes(bytes(range(32)))


def _file(name: str) -> Path:
    return Path(get_testdata_file(name))


@pytest.fixture(scope="module")
def ct_small() -> tuple:
    return evaluate_file(_file("CT_small.dcm"), "CT_small.dcm", model_id=None, key=KEY, seed=3)


@pytest.mark.slow
def test_ct_reconstruction_figures_are_sensible(ct_small: tuple) -> None:
    result, _ = ct_small
    q = result.reconstruction
    assert result.model_id == DEFAULT_MODELS[1] and result.modality == "CT"
    assert (result.rows, result.columns, result.samples, result.bits_stored) == (128, 128, 1, 16)
    assert result.frames_total == 1 and result.frames_evaluated == (0,)
    assert math.isfinite(q.psnr_bits_db) and q.psnr_bits_db > 20
    # The bit-depth peak (65535) is far above CT_small's range: the range figure is the harder one.
    assert q.psnr_range_db < q.psnr_bits_db
    assert 0.9 < q.ssim <= 1.0 and 0.9 < q.ssim_unit <= 1.0
    assert 0 < q.mse_unit < 0.005 and q.mse > 0
    assert q.window_mae_hu is not None and 0 < q.window_mae_hu < 50
    assert 0 < result.latent_bytes < result.raw_bytes == 128 * 128 * 2
    assert result.envelope_bytes > result.latent_bytes


@pytest.mark.slow
def test_ct_noise_rows_cover_the_four_kinds(ct_small: tuple) -> None:
    result, _ = ct_small
    assert [n.kind for n in result.noise] == list(NOISE_KINDS)
    for n in result.noise:
        assert 0 < n.ssim_noisy < 1 and 0 < n.ssim_decoded < 1
        assert n.mse_noisy > 0 and n.mse_decoded > 0
    # Gaussian noise of SD 0.1 on a CT slice: the decoder's smoothing must bring it closer.
    gaussian = result.noise[NOISE_KINDS.index("gaussian")]
    assert gaussian.decoded_closer


@pytest.mark.slow
def test_same_seed_same_noise_figures(ct_small: tuple) -> None:
    again, _ = evaluate_file(_file("CT_small.dcm"), "CT_small.dcm", model_id=None, key=Key.generate(), seed=3)
    assert again.noise == ct_small[0].noise
    assert again.reconstruction == ct_small[0].reconstruction


@pytest.mark.slow
def test_panels_latent_survives_encryption_and_ciphertext_looks_random(ct_small: tuple) -> None:
    _, panels = ct_small
    assert panels.original.shape == panels.reconstruction.shape == (128, 128, 1)
    assert panels.latent is not None and panels.latent.shape == (64, 64, 3)
    np.testing.assert_array_equal(panels.latent, panels.decrypted_latent)
    cipher = np.frombuffer(panels.ciphertext, np.uint8)
    assert abs(cipher.mean() - 127.5) < 5  # uniform bytes, unlike any latent
    latent_as_bytes = np.frombuffer(panels.latent.astype(np.float32).tobytes(), np.uint8)
    assert not np.array_equal(cipher[: latent_as_bytes.size], latent_as_bytes[: cipher.size])
    png = figure6_png(panels, "CT_small")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000


def test_colour_image_uses_the_colour_model() -> None:
    result, panels = evaluate_file(_file("SC_rgb.dcm"), "SC_rgb.dcm", model_id=None, key=KEY)
    assert result.model_id == DEFAULT_MODELS[3] and result.samples == 3
    assert math.isfinite(result.reconstruction.psnr_bits_db) and result.reconstruction.ssim > 0.5
    assert panels.original.shape == (100, 100, 3)


@pytest.mark.slow
def test_multi_frame_middle_or_all() -> None:
    assert select_frames(10, "middle") == [5] and select_frames(1, "middle") == [0]
    assert select_frames(3, "all") == [0, 1, 2]
    with pytest.raises(ValueError, match="frames must be one of"):
        select_frames(3, "first")
    middle, _ = evaluate_file(_file("emri_small.dcm"), "emri", model_id=None, key=KEY)
    every, _ = evaluate_file(_file("emri_small.dcm"), "emri", model_id=None, key=KEY, frames="all")
    assert middle.frames_evaluated == (5,) and every.frames_evaluated == tuple(range(10))
    assert every.raw_bytes == 10 * middle.raw_bytes


def test_images_the_model_cannot_take_are_refused_with_the_reason() -> None:
    with pytest.raises(UnsupportedImageError, match="1-bit"):
        evaluate_file(_file("liver_1frame.dcm"), "liver", model_id=None, key=KEY)
    with pytest.raises(UnsupportedImageError, match="3-sample image, model paper-grey@1 takes 1"):
        evaluate_file(_file("SC_rgb.dcm"), "rgb", model_id="paper-grey@1", key=KEY)
    with pytest.raises(InvalidInputError, match="no Pixel Data"):
        evaluate_file(_file("rtplan.dcm"), "plan", model_id=None, key=KEY)


def test_psnr_on_bit_depth_beside_range() -> None:
    original = np.array([0, 100, 200, 4095], np.uint16).reshape(1, 2, 2, 1)
    restored = original + np.array([1, 1, 1, 1], np.uint16).reshape(1, 2, 2, 1)
    q = quality.compare(original, restored, bits_stored=12)
    assert q.psnr_bits_db == pytest.approx(20 * math.log10(4095))
    assert q.psnr_db == pytest.approx(20 * math.log10(4095))  # this image spans its bit depth
    assert quality.compare(original, restored).psnr_bits_db is None
    assert quality.compare(original, original, bits_stored=12).psnr_bits_db == math.inf


@pytest.mark.slow
def test_report_json_and_markdown(ct_small: tuple, tmp_path: Path) -> None:
    result, _ = ct_small
    doc = build_report([result], [Skipped("plan.dcm", "no Pixel Data"), Skipped("bad.dcm", "boom", failed=True)],
                       source="in", seed=3, frames="middle")
    json_path, md_path = write_report(tmp_path, doc)
    loaded = json.loads(json_path.read_text())
    assert loaded == json.loads(json.dumps(doc))
    image = loaded["images"][0]
    assert image["figure"] == f"figures/CT_small.dcm.{DEFAULT_MODELS[1]}.png"
    assert set(image["noise"]) == set(NOISE_KINDS) and "decoded_closer" in image["noise"]["poisson"]
    assert loaded["skipped"] == [{"file": "plan.dcm", "reason": "no Pixel Data"}]
    assert loaded["failed"] == [{"file": "bad.dcm", "error": "boom"}]
    assert loaded["summary"]["images"] == 1 and loaded["noise_parameters"][2]["parameters"] == {"peak_counts": 256.0}
    text = md_path.read_text()
    assert text == to_markdown(doc)
    assert "## Denoising (the paper's Table 6)" in text
    assert f"| CT_small.dcm | {DEFAULT_MODELS[1]} | CT | 128x128x1 | 16 |" in text
    assert not list(tmp_path.glob(".*.tmp"))


def test_model_is_loaded_once_per_process() -> None:
    assert load_model(DEFAULT_MODELS[1]) is load_model(None, channels=1)
