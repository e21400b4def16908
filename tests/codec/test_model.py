"""The shipped models end to end: shapes, quality, determinism across threads, tiling."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from dicomcrypt.codec import normalise
from dicomcrypt.codec.registry import load_model
from dicomcrypt.codec.runtime import LoadedModel
from dicomcrypt.errors import ModelError


@pytest.fixture(scope="module")
def grey() -> LoadedModel:
    return load_model()


@pytest.fixture(scope="module")
def colour() -> LoadedModel:
    return load_model(channels=3)


def _smooth(frames: int, height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """An image with structure at several scales (random noise would test nothing useful)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((frames, height, width, channels), np.float32)
    for f in range(frames):
        for c in range(channels):
            a, b, p = rng.uniform(0.05, 0.3, 3)
            out[f, :, :, c] = 0.5 + 0.3 * np.sin(a * yy + p) * np.cos(b * xx) + rng.normal(0, 0.02, (height, width))
    return np.clip(out, 0, 1)


@pytest.mark.parametrize("shape", [(1, 3, 3), (1, 65, 33), (1, 1, 7), (1, 2, 2), (3, 20, 18)])
def test_shapes_round_trip_for_odd_sizes_and_frames(grey: LoadedModel, shape: tuple[int, int, int]) -> None:
    image = _smooth(*shape, 1)
    decoded = grey.decode(grey.encode(image))
    assert decoded.shape == image.shape and decoded.dtype == np.float64
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0


def test_colour_model_shapes(colour: LoadedModel) -> None:
    image = _smooth(2, 9, 11, 3)
    for latent_format in ("u8", "f16"):
        decoded = colour.decode(colour.encode(image, latent_format=latent_format))
        assert decoded.shape == image.shape


def test_channel_mismatch_is_a_model_error(grey: LoadedModel) -> None:
    with pytest.raises(ModelError, match="1-channel"):
        grey.encode(np.zeros((1, 8, 8, 3), np.float32))


def test_ct_small_quality(grey: LoadedModel) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = ds.pixel_array[None, :, :, None]
    norm = normalise.fit(pixels)
    restored = normalise.from_unit(grey.decode(grey.encode(normalise.to_unit(pixels, norm))), norm, pixels.dtype)
    data_range = float(pixels.max()) - float(pixels.min())
    mse = np.mean((pixels.astype(np.float64) - restored) ** 2)
    psnr = 10 * np.log10(data_range**2 / mse)
    assert psnr > 32.0, f"CT_small PSNR over its range {psnr:.2f} dB"


def test_fixed_point_decoder_stays_close_to_float_decoder(grey: LoadedModel) -> None:
    latent = grey.encode(_smooth(1, 40, 36, 1))
    assert np.abs(grey.decode(latent) - grey.decode_float(latent)).max() < 0.01


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.slow
def test_decode_is_bit_identical_across_thread_counts(grey: LoadedModel, tmp_path) -> None:
    latent = grey.encode(_smooth(1, 70, 52, 1, seed=3))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = grey.decode(latent)
        torch.set_num_threads(2)
        two = grey.decode(latent)
    finally:
        torch.set_num_threads(before)
    assert _digest(one) == _digest(two)
    # A fresh process with yet another thread count (and its own MKL/OpenMP initialisation).
    path = tmp_path / "latent.bin"
    path.write_bytes(latent)
    code = textwrap.dedent(
        f"""
        import hashlib, torch
        torch.set_num_threads(3)
        from dicomcrypt.codec.registry import load_model
        out = load_model().decode(open({str(path)!r}, "rb").read())
        print(hashlib.sha256(out.tobytes()).hexdigest())
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == _digest(one)


def test_tiled_decode_equals_untiled_exactly(grey: LoadedModel) -> None:
    image = _smooth(1, 100, 75, 1, seed=5)
    latent = grey.encode(image, tile=64)
    untiled = grey.decode(latent, tile=256)  # one tile covers the image
    for tile in (40, 64):
        assert np.array_equal(grey.decode(latent, tile=tile), untiled), tile


def test_tiled_encode_matches_untiled_closely(grey: LoadedModel) -> None:
    image = _smooth(1, 96, 70, 1, seed=6)
    tiled = grey.encode_latent(image, tile=32)
    untiled = grey.encode_latent(image, tile=256)
    assert np.abs(tiled - untiled).max() < 1e-4  # float32: equal up to kernel choice


def test_tile_must_be_a_multiple_of_the_downsampling(grey: LoadedModel) -> None:
    with pytest.raises(ValueError):
        grey.encode(_smooth(1, 8, 8, 1), tile=33)
