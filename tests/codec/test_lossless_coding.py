"""Exactness of the codec parts that carry pixels without a model."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.codec import lossless, normalise, residual, standard
from dicomcrypt.errors import PayloadFormatError
from dicomcrypt.payload import Payload

DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32]


def _random_frames(dtype, shape=(2, 17, 23, 1), seed=0):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=np.int64).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("samples", [1, 3])
def test_standard_round_trip_is_exact_over_the_full_range(dtype, samples):
    frames = _random_frames(dtype, (2, 9, 11, samples))
    blob = standard.encode_pixels(frames)
    restored = standard.decode_pixels(blob, frames.shape, frames.dtype)
    assert restored.dtype == frames.dtype
    np.testing.assert_array_equal(restored, frames)


def test_standard_takes_float_pixels():
    frames = np.random.default_rng(1).normal(size=(1, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(standard.decode_pixels(standard.encode_pixels(frames), frames.shape, np.float32), frames)


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_is_exact_whatever_the_prediction(dtype):
    frames = _random_frames(dtype, seed=2)
    # A prediction that is wildly wrong in places (wraps the modulus) must still be exact.
    prediction = _random_frames(dtype, seed=3).astype(np.int64) * 3
    blob = residual.encode_residual(frames, prediction)
    np.testing.assert_array_equal(residual.decode_residual(blob, prediction, dtype), frames)


def test_real_ct_with_padding_codes_exactly_and_smaller_than_raw():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    frames = ds.pixel_array[None, ..., None]
    blob = standard.encode_pixels(frames)
    assert len(blob) < frames.nbytes
    np.testing.assert_array_equal(standard.decode_pixels(blob, frames.shape, frames.dtype), frames)


def test_jpeg_ls_is_used_for_real_images_and_zstd_for_tiny_ones():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    big = ds.pixel_array.view(np.uint16)[None, ..., None]
    tiny = np.zeros((1, 1, 1, 1), np.uint16)
    assert lossless.encode_frames(big)[4] == lossless.JPEG_LS
    assert lossless.encode_frames(tiny)[4] == lossless.ZSTD


def test_normalisation_leaves_padding_out_of_the_range():
    frame = np.full((1, 10, 10, 1), -2000, np.int16)
    frame[0, :5] = np.arange(50, dtype=np.int16).reshape(5, 10, 1) + 100
    norm = normalise.fit(frame)
    assert norm.low == (100,) and norm.high == (149,)
    unit = normalise.to_unit(frame, norm)
    assert unit.min() == 0.0 and unit.max() == 1.0
    back = normalise.from_unit(unit.astype(np.float64), norm, np.int16)
    np.testing.assert_array_equal(back[0, :5], frame[0, :5])


def test_normalisation_uses_pixel_padding_value_and_survives_flat_frames():
    frame = np.zeros((2, 4, 4, 1), np.uint16)
    frame[0, 0, 0] = 7
    norm = normalise.fit(frame, padding_value=7)
    assert norm.low == (0, 0) and norm.high == (1, 1)


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "truncated"),
        (b"\x00\x00\x00\x01\x01\x00\x00\x00\x10abc", "truncated"),
        (b"\x00\x00\x00\x01\x07\x00\x00\x00\x01a", "unknown codec"),
        (b"\x00\x00\x00\x02", "2 frames stored"),
    ],
)
def test_malformed_coded_frames_raise_payload_errors(blob, message):
    with pytest.raises(PayloadFormatError, match=message):
        lossless.decode_frames(blob, (1, 2, 2, 1), np.uint8)


def test_payload_round_trip_and_refusals():
    payload = Payload({"a": 1, "b": [1, 2]}, {"latent": b"\x00" * 5, "residual": b"xyz"})
    blob = payload.to_bytes()
    back = Payload.from_bytes(blob)
    assert back.meta == payload.meta and back.sections == payload.sections
    with pytest.raises(PayloadFormatError, match="truncated"):
        Payload.from_bytes(blob[:-1])
    with pytest.raises(PayloadFormatError, match="trailing"):
        Payload.from_bytes(blob + b"\x00")
    with pytest.raises(PayloadFormatError, match="magic"):
        Payload.from_bytes(b"XXXX" + blob[4:])
    with pytest.raises(PayloadFormatError, match="missing"):
        back.section("pixels")


def test_detected_padding_is_reported_and_its_mask_round_trips():
    frames = np.full((2, 6, 10, 1), -2000, np.int16)
    frames[:, 2:, :] = np.arange(40, dtype=np.int16).reshape(1, 4, 10, 1)
    norm = normalise.fit(frames)
    assert norm.padding == -2000 and norm.low == (0, 0)
    mask = normalise.padding_mask(frames, norm)
    assert mask is not None and mask.sum() == 2 * 2 * 10
    np.testing.assert_array_equal(normalise.decode_mask(normalise.encode_mask(mask), mask.shape), mask)
    assert normalise.Normalisation.from_json(norm.to_json()) == norm
