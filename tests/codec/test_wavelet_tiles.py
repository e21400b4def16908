"""Large frames: the wavelet codec codes them as tiles, so its memory is bounded by the tile."""

from __future__ import annotations

import dataclasses
import struct
import tracemalloc

import numpy as np
import pytest

from dicomcrypt import dicom
from dicomcrypt.codec.coders import CodingContext, coder_for
from dicomcrypt.codec.coders import wavelet as coder
from dicomcrypt.codec.registry import load_codec
from dicomcrypt.codec.wavelet import tiles
from dicomcrypt.codec.wavelet.model import WaveletModel
from dicomcrypt.envelope import Mode
from dicomcrypt.errors import PayloadFormatError
from dicomcrypt.payload import PayloadMeta
from dicomcrypt.quality import compare


def _radiograph(size: int) -> tuple[np.ndarray, dicom.PixelFormat]:
    """A smooth 12-bit image with noise, as one (1, H, W, 1) frame: what a CR detector gives."""
    y, x = np.mgrid[0:size, 0:size]
    noise = np.random.default_rng(size).normal(0, 20, (size, size))
    image = ((np.sin(x / 200) + np.cos(y / 300)) * 800 + 2000 + noise).astype(np.uint16)
    fmt = dicom.PixelFormat(rows=size, columns=size, frames=1, samples_per_pixel=1, bits_allocated=16,
                            bits_stored=12, high_bit=11, pixel_representation=0,
                            photometric_interpretation="MONOCHROME2", original_photometric_interpretation="MONOCHROME2")
    return image[None, ..., None], fmt


def _unpack(mode: Mode, packed, frames: np.ndarray, fmt: dicom.PixelFormat, model) -> np.ndarray:
    meta = PayloadMeta.from_json(
        PayloadMeta.build(pixel_format=fmt, shape=frames.shape, dtype=frames.dtype, **packed.meta).to_json()
    )
    return coder_for(mode).unpack(packed.sections, meta, CodingContext(model))


def test_a_large_frame_is_tiled_and_exact():
    frames, fmt = _radiograph(2100)  # 4.4 megapixels: above the threshold, 3 x 3 tiles
    shipped = load_codec(None, 1)
    model = WaveletModel(shipped.info, dataclasses.replace(shipped.params, exact_codings=("wavelet",)))
    packed = coder_for(Mode.LOSSLESS).pack(frames, fmt, CodingContext(model, effort="smallest"))
    assert packed.sections["pixels"][4] == coder.WAVELET_TILES
    np.testing.assert_array_equal(_unpack(Mode.LOSSLESS, packed, frames, fmt, model), frames)


@pytest.mark.slow
def test_lossy_4000_square_stays_within_a_tile_sized_memory_budget():
    frames, fmt = _radiograph(4000)
    model = load_codec(None, 1)
    tracemalloc.start()
    try:
        packed = coder_for(Mode.LOSSY).pack(frames, fmt, CodingContext(model))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Untiled, the transform, context planes and coder plan took ~30x the frame (981 MB); tiled ~2x.
    assert peak < 4 * frames.nbytes, peak
    assert packed.sections["pixels"][4] == coder.WAVELET_TILES
    restored = _unpack(Mode.LOSSY, packed, frames, fmt, model)
    assert compare(frames, restored).psnr_db >= 40


@pytest.mark.parametrize(("alter", "message"), [
    (lambda blob: blob[:6], "truncated header"),
    (lambda blob: struct.pack(">II", 16, 1024) + blob[8:], "tile size 16 x 1024 out of range"),
    (lambda blob: blob[:-3], "tile 8 truncated"),
    (lambda blob: blob + b"\0", "trailing bytes after the last tile"),
])
def test_a_damaged_tiled_frame_is_refused_before_decoding(alter, message):
    height = width = 2100
    blob = tiles.pack(height, width, lambda rect: b"x" * (rect[0].stop - rect[0].start))
    with pytest.raises(PayloadFormatError, match=message):
        list(tiles.unpack(alter(blob), height, width))
