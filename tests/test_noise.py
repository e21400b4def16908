"""The Table 6 noise types: statistics, determinism, dtype and range."""

from __future__ import annotations

import numpy as np
import pytest

from dicomcrypt.noise import NOISE_KINDS, NOISE_PARAMETERS, add_noise, describe_parameters


def _flat(value: float, dtype: type = np.float64, shape: tuple[int, ...] = (1, 256, 256, 1)) -> np.ndarray:
    return np.full(shape, value, dtype=dtype)


def test_kinds_are_the_papers_four_in_table_order() -> None:
    assert NOISE_KINDS == ("salt_and_pepper", "speckle", "poisson", "gaussian")
    assert set(NOISE_PARAMETERS) == set(NOISE_KINDS)
    assert [row["kind"] for row in describe_parameters()] == list(NOISE_KINDS)


@pytest.mark.parametrize("kind", NOISE_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_range_shape_and_input_untouched(kind: str, dtype: type) -> None:
    image = np.random.default_rng(0).random((2, 40, 30, 3)).astype(dtype)
    before = image.copy()
    noisy = add_noise(image, kind, np.random.default_rng(1))
    assert noisy.dtype == dtype and noisy.shape == image.shape
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert not np.array_equal(noisy, image)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_same_seed_same_noise_other_seed_other_noise(kind: str) -> None:
    image = np.random.default_rng(0).random((1, 64, 64, 1))
    a = add_noise(image, kind, np.random.default_rng(7))
    b = add_noise(image, kind, np.random.default_rng(7))
    c = add_noise(image, kind, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_salt_and_pepper_hits_the_stated_share_half_each() -> None:
    noisy = add_noise(_flat(0.5), "salt_and_pepper", np.random.default_rng(0))
    hit = noisy != 0.5
    assert abs(hit.mean() - 0.05) < 0.005
    assert set(np.unique(noisy[hit])) == {0.0, 1.0}
    assert abs((noisy == 1.0).sum() / hit.sum() - 0.5) < 0.05


def test_gaussian_mean_and_sd() -> None:
    noisy = add_noise(_flat(0.5), "gaussian", np.random.default_rng(0))
    diff = noisy - 0.5
    assert abs(diff.mean()) < 0.002
    assert abs(diff.std() - 0.1) < 0.002


def test_speckle_scales_with_the_signal() -> None:
    rng = np.random.default_rng(0)
    dark = add_noise(_flat(0.1), "speckle", rng) - 0.1
    bright = add_noise(_flat(0.8), "speckle", rng) - 0.8
    assert abs(dark.std() - 0.01) < 0.001
    assert abs(bright.std() - 0.08) < 0.003
    assert abs(bright.mean()) < 0.002


def test_poisson_variance_is_the_mean_over_the_count_at_any_bit_depth() -> None:
    # 256 photons at full scale: at x = 0.5 the SD is sqrt(0.5 / 256) = 0.044, unlike skimage's
    # scaling, which on 16-bit data would add almost nothing.
    noisy = add_noise(_flat(0.5), "poisson", np.random.default_rng(0))
    assert abs(noisy.mean() - 0.5) < 0.002
    assert abs(noisy.std() - np.sqrt(0.5 / 256)) < 0.002
    many_values = np.linspace(0, 1, 65536).reshape(1, 256, 256, 1)  # 16-bit-like content
    spread = add_noise(many_values, "poisson", np.random.default_rng(0)) - many_values
    assert spread.std() > 0.02


def test_parameters_override_and_errors() -> None:
    rng = np.random.default_rng(0)
    quiet = add_noise(_flat(0.5), "gaussian", rng, {"var": 0.0001}) - 0.5
    assert abs(quiet.std() - 0.01) < 0.001
    with pytest.raises(ValueError, match="unknown noise kind 'blur'"):
        add_noise(_flat(0.5), "blur", rng)
    with pytest.raises(ValueError, match="no parameter sigma"):
        add_noise(_flat(0.5), "gaussian", rng, {"sigma": 0.1})
    with pytest.raises(ValueError, match="not be negative"):
        add_noise(_flat(0.5), "speckle", rng, {"var": -1.0})
    with pytest.raises(ValueError, match="floats in"):
        add_noise(np.zeros((4, 4), np.uint16), "gaussian", rng)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        add_noise(_flat(2.0), "gaussian", rng)
