"""Exactness of the codec parts that carry pixels without a model."""

from __future__ import annotations

import struct

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.codec import lossless, normalise, residual
from dicomcrypt.codec.coders import standard
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
    decoded = standard.decode_pixels(standard.encode_pixels(frames), frames.shape, np.float32)
    np.testing.assert_array_equal(decoded, frames)


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_is_exact_whatever_the_prediction(dtype):
    frames = _random_frames(dtype, seed=2)
    # A prediction that is wildly wrong in places (wraps the modulus) must still be exact.
    prediction = _random_frames(dtype, seed=3).astype(np.int64) * 3
    blob = residual.encode_residual(frames, prediction)
    np.testing.assert_array_equal(residual.decode_residual(blob, prediction, dtype), frames)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("predictor", residual.PREDICTORS)
def test_each_forced_predictor_round_trips_exactly(dtype, predictor):
    frames = _random_frames(dtype, (3, 17, 23, 1), seed=4)
    prediction = _random_frames(dtype, (3, 17, 23, 1), seed=5)
    blob, chosen = residual.encode(frames, prediction, predictor=predictor)
    assert chosen == [predictor] * 3
    restored = residual.decode(blob, chosen, prediction if predictor == residual.DECODER else None,
                               frames.shape, dtype)
    assert restored.dtype == frames.dtype
    np.testing.assert_array_equal(restored, frames)


def test_forced_none_needs_no_prediction_and_matches_the_standard_coding():
    frames = _random_frames(np.int16, seed=6)
    blob, _ = residual.encode(frames, None, predictor=residual.NONE)
    assert blob == standard.encode_pixels(frames)
    with pytest.raises(ValueError, match="prediction"):
        residual.encode(frames, None)


def test_the_choice_is_per_frame_and_keeps_the_smaller_coding():
    rng = np.random.default_rng(7)
    noisy = rng.integers(0, 256, (64, 64, 1), dtype=np.uint8)  # JPEG-LS cannot shrink noise...
    smooth = np.tile(np.arange(64, dtype=np.uint8), (64, 1))[..., None]
    frames = np.stack([noisy, smooth])
    # ...but a perfect prediction leaves a constant residual; a wrong one only adds noise.
    prediction = np.stack([noisy, rng.integers(0, 256, (64, 64, 1), dtype=np.uint8)])
    blob, chosen = residual.encode(frames, prediction)
    assert chosen == [residual.DECODER, residual.NONE]
    forced = {p: residual.encode(frames, prediction, predictor=p)[0] for p in residual.PREDICTORS}
    assert len(blob) < min(len(b) for b in forced.values())
    np.testing.assert_array_equal(residual.decode(blob, chosen, prediction, frames.shape, np.uint8), frames)


def test_signed_ct_with_negative_values_round_trips_with_predictor_none():
    from helpers.corpus import sample

    frames = pydicom.dcmread(sample("693_UNCR.dcm")).pixel_array[None, ..., None]
    assert frames.dtype == np.int16 and frames.min() < 0
    blob, chosen = residual.encode(frames, None, predictor=residual.NONE)
    assert len(blob) < frames.nbytes
    restored = residual.decode(blob, chosen, None, frames.shape, frames.dtype)
    assert restored.dtype == np.int16
    np.testing.assert_array_equal(restored, frames)


def test_legacy_residual_is_the_all_decoder_coding():
    frames, prediction = _random_frames(np.int16, seed=8), _random_frames(np.int16, seed=9)
    legacy = residual.encode_residual(frames, prediction)
    assert legacy == residual.encode(frames, prediction, predictor=residual.DECODER)[0]
    np.testing.assert_array_equal(residual.decode(legacy, [residual.DECODER] * 2, prediction, frames.shape, np.int16),
                                  frames)


@pytest.mark.parametrize(
    "value, message",
    [
        (["decoder", "jpeg2000"], "unknown residual predictor 'jpeg2000'"),
        ("none", "must be a list"),
        ([1, 2], "must be a list"),
        (["none"], "has 1 entries, the image has 2 frames"),
    ],
)
def test_malformed_predictor_lists_are_refused_clearly(value, message):
    with pytest.raises(PayloadFormatError, match=message):
        residual.parse_predictors(value, 2)


def test_unknown_predictors_are_refused_by_the_coder():
    frames = _random_frames(np.uint8)
    blob, _ = residual.encode(frames, None, predictor=residual.NONE)
    with pytest.raises(PayloadFormatError, match="unknown predictor 'guess' for frame 1"):
        residual.decode(blob, ["none", "guess"], None, frames.shape, np.uint8)
    with pytest.raises(ValueError, match="unknown residual predictor"):
        residual.encode(frames, None, predictor="guess")


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


# -- every declared size is checked before the codec allocates for it (issue 12) --------------


def _jpeg_ls_blob() -> tuple[bytes, tuple[int, int, int, int], np.dtype]:
    frames = np.random.default_rng(3).integers(0, 4000, size=(1, 32, 24, 1)).astype(np.uint16)
    blob = lossless.encode_frames(frames)
    assert blob[4] == lossless.JPEG_LS
    return blob, frames.shape, frames.dtype


@pytest.mark.parametrize(("lines", "columns"), [(60000, 24), (32, 60000), (0, 24)])
def test_a_jpeg_ls_frame_header_that_disagrees_with_the_shape_is_refused_before_decoding(lines, columns) -> None:
    blob, shape, dtype = _jpeg_ls_blob()
    patched = bytearray(blob)
    sof = patched.index(b"\xff\xf7")
    struct.pack_into(">HH", patched, sof + 5, lines, columns)
    with pytest.raises(PayloadFormatError, match=f"JPEG-LS codestream declares {lines} x {columns} x 1 at 12 bits, "
                                                 "the payload declares 32 x 24 x 1 <u2"):
        lossless.decode_frames(bytes(patched), shape, dtype)


def test_a_jpeg_ls_codestream_without_a_frame_header_is_refused() -> None:
    blob, shape, dtype = _jpeg_ls_blob()
    patched = bytearray(blob)
    patched[patched.index(b"\xff\xf7") + 1] = 0xF8  # SOF-55 becomes another marker
    with pytest.raises(PayloadFormatError, match="no readable frame header"):
        lossless.decode_frames(bytes(patched), shape, dtype)


@pytest.mark.parametrize("content_size", [True, False])
def test_a_zstd_frame_must_declare_exactly_the_frame_size(content_size) -> None:
    import zstandard

    frames = np.zeros((1, 4, 4, 1), np.uint16)
    data = zstandard.ZstdCompressor(write_content_size=content_size).compress(bytes(1 << 20))
    blob = struct.pack(">IBI", 1, lossless.ZSTD, len(data)) + data
    with pytest.raises(PayloadFormatError, match="zstd frame declares .*, the frame is 32 bytes"):
        lossless.decode_frames(blob, frames.shape, frames.dtype)
