"""The lifting transform's speed-ups change no integer: outputs pinned by digest, int32 against int64.

The digests were taken with the transform as it was before it worked in place and in int32
(commit e75e375, `_take`/`_split`/`_merge` on int64): every stream it wrote decodes, and encodes
again, to the same bytes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest
from helpers.corpus import sample

from dicomcrypt.codec.wavelet import transform

LIFTINGS = (transform.LEGALL_53, transform.CDF_97)
SHAPES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (5, 3), (4, 4), (8, 9), (17, 33), (64, 63), (130, 97)]
PINNED = {
    "random": "214f44777a55d4d1aaf71a09731a2e9a8576fc6ca674fd5a516151d9543ffee6",
    "693_UNCR.dcm": "8391fa293940d3e158626cebe799f869a75bdeb89d3a714e1ebfbb4af22146e0",
    "US1_UNCR.dcm": "faa38ccfa302916bc00db625f53fd97c4c76a467c1c861cb5eaa96255c85d381",
}


def _random_planes() -> list[np.ndarray]:
    rng = np.random.default_rng(1234)
    return [rng.integers(-(1 << bits), 1 << bits, size=shape, dtype=np.int64) for shape in SHAPES
            for bits in (8, 16, 30)]


def _image_planes(name: str) -> list[np.ndarray]:
    pixels = pydicom.dcmread(sample(name)).pixel_array.astype(np.int64)
    if pixels.ndim == 3:
        pixels = transform.forward_colour(pixels)
        return [np.ascontiguousarray(pixels[..., i]) for i in range(3)]
    return [pixels, pixels << 2]


def _digest(planes: list[np.ndarray], module=transform) -> str:
    """SHA-256 of forward and inverse (the inverse of the plane itself: any integers) of every
    plane, both liftings, 0, 1 and all levels."""
    digest = hashlib.sha256()
    for plane in planes:
        for lifting in (module.LEGALL_53, module.CDF_97):
            for levels in sorted({0, 1, module.levels_for(*plane.shape)}):
                for out in (module.forward(plane, levels, lifting), module.inverse(plane, levels, lifting)):
                    assert out.dtype == np.int64
                    digest.update(np.ascontiguousarray(out, dtype="<i8").tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("case", list(PINNED))
def test_transform_outputs_are_the_pinned_integers(case):
    planes = _random_planes() if case == "random" else _image_planes(case)
    assert _digest(planes) == PINNED[case]


@pytest.mark.parametrize("lifting", LIFTINGS, ids=lambda lifting: lifting.name)
def test_int32_path_equals_int64_at_the_largest_value_it_accepts(lifting, monkeypatch):
    """The worst input the int32 bound lets through (a full-scale checkerboard, every edge case of
    the mirror) gives the int64 path's integers, forward and inverse."""
    shape = (67, 45)
    levels = transform.levels_for(*shape)
    low, high = 0, 1 << 40  # bisect the largest max |value| still given int32
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if transform._working_dtype(middle, levels, lifting) == np.int32 else (low, middle)
    assert low > 0, "no input would use int32"
    signs = np.where((np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 2) == 0, 1, -1)
    worst = signs * low
    forward32 = transform.forward(worst, levels, lifting)
    inverse32 = transform.inverse(worst, levels, lifting)
    monkeypatch.setattr(transform, "_working_dtype", lambda *_: np.dtype(np.int64))
    np.testing.assert_array_equal(forward32, transform.forward(worst, levels, lifting))
    np.testing.assert_array_equal(inverse32, transform.inverse(worst, levels, lifting))
    np.testing.assert_array_equal(transform.inverse(forward32, levels, lifting), worst)


def test_real_images_take_the_int32_path_on_the_exact_transform():
    for bits in (8, 12, 16):
        assert transform._working_dtype((1 << bits) + 1, transform.MAX_LEVELS, transform.LEGALL_53) == np.int32
    assert transform._working_dtype(1 << 40, transform.MAX_LEVELS, transform.LEGALL_53) == np.int64
