"""Latent serialisation: round trips, exact dequantisation, and refusal of malformed bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zstandard

from dicomcrypt.codec.latent import MAGIC, latent_from_bytes, latent_to_bytes
from dicomcrypt.errors import PayloadFormatError


def _latent(frames: int = 2, height: int = 5, width: int = 4, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.normal(size=(frames, height, width, channels)) * 3).astype(np.float32)


def _blob(latent_format: str = "u8") -> bytes:
    return latent_to_bytes(_latent(), latent_format=latent_format, factor=2, original_size=(9, 8), tile=256)


def test_u8_round_trip_within_half_a_step() -> None:
    latent = _latent()
    parsed = latent_from_bytes(latent_to_bytes(latent, factor=2, original_size=(9, 8), tile=256))
    assert parsed.values.shape == latent.shape and parsed.values.dtype == np.float64
    assert (parsed.format, parsed.factor, parsed.original_size, parsed.tile) == ("u8", 2, (9, 8), 256)
    span = latent.max(axis=(1, 2)) - latent.min(axis=(1, 2))  # per frame and channel
    error = np.abs(parsed.values - latent).max(axis=(1, 2))
    assert np.all(error <= span / 255 / 2 * 1.001 + 1e-6)


def test_u8_dequantisation_is_plain_ieee_multiply_then_add() -> None:
    blob = _blob()
    parsed = latent_from_bytes(blob)
    frames, channels = 2, 3
    offset = struct.calcsize(">4sBBBIIIHIII")
    params = np.frombuffer(blob[offset : offset + frames * channels * 8], dtype=">f4").reshape(frames, channels, 2)
    q = np.frombuffer(zstandard.ZstdDecompressor().decompress(blob[offset + frames * channels * 8 :]), np.uint8)
    q = q.reshape(frames, channels, 5, 4)
    for f in range(frames):
        for c in range(channels):
            low, step = float(params[f, c, 0]), float(params[f, c, 1])
            expected = [float(v) * step + low for v in q[f, c].ravel()]  # Python floats: IEEE double
            assert parsed.values[f, :, :, c].ravel().tolist() == expected


def test_f16_round_trip_is_float16_exact() -> None:
    latent = _latent()
    parsed = latent_from_bytes(latent_to_bytes(latent, latent_format="f16", factor=2, original_size=(10, 7), tile=64))
    assert parsed.format == "f16" and parsed.original_size == (10, 7) and parsed.tile == 64
    assert np.array_equal(parsed.values, latent.astype(np.float16).astype(np.float64))


def test_constant_channel_quantises_without_dividing_by_zero() -> None:
    latent = np.full((1, 2, 2, 3), 0.25, np.float32)
    parsed = latent_from_bytes(latent_to_bytes(latent, factor=2, original_size=(3, 4), tile=256))
    assert np.all(parsed.values == 0.25)


def test_u8_is_smaller_than_f16() -> None:
    assert len(_blob("u8")) < len(_blob("f16"))


def test_writer_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        latent_to_bytes(_latent(), latent_format="f32", factor=2, original_size=(9, 8), tile=256)
    with pytest.raises(ValueError):
        latent_to_bytes(_latent(), factor=2, original_size=(20, 8), tile=256)  # 5 rows cannot hold 20
    bad = _latent()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        latent_to_bytes(bad, factor=2, original_size=(9, 8), tile=256)


def _patch(blob: bytes, offset: int, fmt: str, value: int) -> bytes:
    return blob[:offset] + struct.pack(fmt, value) + blob[offset + struct.calcsize(fmt) :]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"", "shorter than"),
        (lambda b: b[:10], "shorter than"),
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: _patch(b, 4, ">B", 2), "version 2"),
        (lambda b: _patch(b, 5, ">B", 9), "unknown sample format"),
        (lambda b: _patch(b, 7, ">I", 0), "zero"),  # frames
        (lambda b: _patch(b, 11, ">I", 6), "does not fit"),  # latent height vs original 9
        (lambda b: _patch(b, 11, ">I", 1 << 30), "does not fit"),
        (
            lambda b: _patch(_patch(_patch(_patch(b, 11, ">I", 1 << 20), 21, ">I", 1 << 21), 15, ">I", 1 << 20),
                             25, ">I", 1 << 21),
            "too large",
        ),
        (lambda b: b[:40], "parameters truncated"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b[:33 + 48] + b"\x00\x01\x02\x03" + b[33 + 52 :], "decode"),  # zstd magic
    ],
)
def test_malformed_latents_raise_payload_format_error(mutate, message: str) -> None:
    with pytest.raises(PayloadFormatError, match=message):
        latent_from_bytes(mutate(_blob()))


def test_wrong_sample_count_is_refused_before_inflating() -> None:
    blob = _blob()
    header_and_params = blob[: struct.calcsize(">4sBBBIIIHIII") + 2 * 3 * 8]
    oversized = zstandard.ZstdCompressor().compress(bytes(10_000_000))
    with pytest.raises(PayloadFormatError, match="declare"):
        latent_from_bytes(header_and_params + oversized)


def test_non_finite_values_are_refused() -> None:
    f16 = bytearray(_blob("f16"))
    header = struct.calcsize(">4sBBBIIIHIII")
    samples = np.frombuffer(zstandard.ZstdDecompressor().decompress(bytes(f16[header:])), "<f2").copy()
    samples[3] = np.inf
    blob = bytes(f16[:header]) + zstandard.ZstdCompressor().compress(samples.tobytes())
    with pytest.raises(PayloadFormatError, match="finite"):
        latent_from_bytes(blob)
    u8 = _blob("u8")
    nan = u8[:header] + struct.pack(">f", float("nan")) + u8[header + 4 :]
    with pytest.raises(PayloadFormatError, match="finite"):
        latent_from_bytes(nan)


def test_magic_is_documented_constant() -> None:
    assert _blob()[:4] == MAGIC == b"DCLT"
