"""One frame <-> one wavelet stream (the codec's byte format; docs/format.md, "Wavelet stream").

Layout (integers big-endian)::

    4 bytes  magic b"DCW1"
    u8       flags: bit 0 lossy, bit 1 reversible colour transform (YCoCg-R) applied
    u8       levels (0..5)
    u8       lifting: 0 = LeGall 5/3, 1 = CDF 9/7 (fixed point, unscaled)
    u8       planes (1 or 3)
    u32 u32  rows, columns (must equal the payload's)
    u32      CRC-32 of the coded coefficients (each plane's int64 array, little-endian, as coded)
    lossy only: u8 fraction bits of the scaled pixels, i64 pixel offset,
                per plane and band: u32 step (Q8 fixed point), i8 reconstruction offset (1/64 step)
    u32      length of the frequency tables, then the tables (zstd; entropy.pack_tables)
    rest     the ANS stream, little-endian u32 words

Everything the decoder needs is integer and in the stream, so it runs the same integer
operations as the encoder on every machine; nothing it computes depends on float rounding.
The CRC makes an altered entropy-coded stream an error even where it would still decode (a
flipped raw bit does not desynchronise ANS): a payload is authenticated, but whoever holds a
recipient string can seal one.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from dicomcrypt.codec.wavelet import bands, entropy, rdo, transform
from dicomcrypt.errors import PayloadFormatError

MAGIC = b"DCW1"
LOSSY = 1
COLOUR = 2
LIFTINGS = (transform.LEGALL_53, transform.CDF_97)
STEP_FRACTION = 8  # quantiser steps are Q8 fixed point
OFFSET_FRACTION = 6  # reconstruction offsets in 1/64 of a step
MAX_STEP = 1 << 24
_HEADER = struct.Struct(">4sBBBBIII")
_LOSSY_HEADER = struct.Struct(">Bq")
_BAND = struct.Struct(">Ib")
_U32 = struct.Struct(">I")
_MAX_TABLE_BYTES = entropy.CONTEXTS * (entropy.TOKENS * 2 + 6) + 8


@dataclass(frozen=True)
class Quantiser:
    """Lossy coding parameters for one frame: per plane and band, integer steps and offsets."""

    fraction_bits: int
    offset: int  # subtracted from pixels before the transform
    steps: tuple[tuple[int, ...], ...]  # Q8 per plane, per band (coding order)
    recon: tuple[tuple[int, ...], ...]  # 1/64 step per plane, per band (the encoder refits them: rdo.fitted_recon)


def encode(frame: np.ndarray, *, colour: bool, lossless: bool, quantiser: Quantiser | None = None,
           tables: dict[int, np.ndarray] | None = None, levels: int | None = None) -> bytes:
    """One ``(H, W, C)`` integer frame -> stream. Exact when ``lossless``; else ``quantiser`` sets the steps."""
    height, width, planes = frame.shape
    levels = transform.levels_for(height, width) if levels is None else levels
    lifting = 0 if lossless else 1
    collector = bands.Collector()
    check = 0
    recon = []  # lossy: the offsets fitted to this frame (rdo.fitted_recon), per plane
    costs = None if lossless else rdo.token_costs(tables or {})
    for index, coefficients in enumerate(analyse(frame, colour=colour, quantiser=None if lossless else quantiser,
                                                 levels=levels)):
        if lossless:
            _differentiate_low(coefficients, levels)
            bands.traverse(coefficients, levels, _kind(index, colour), collector)
        else:
            assert quantiser is not None and costs is not None
            coefficients, offsets = rdo.code_plane(coefficients, levels, quantiser.steps[index],
                                                   quantiser.recon[index], collector, kind=_kind(index, colour),
                                                   costs=costs, step_fraction=STEP_FRACTION)
            recon.append(offsets)
        check = _crc(coefficients, check)
    header = _HEADER.pack(MAGIC, (0 if lossless else LOSSY) | (COLOUR if colour else 0), levels, lifting, planes,
                          height, width, check)
    if not lossless:
        assert quantiser is not None
        header += _LOSSY_HEADER.pack(quantiser.fraction_bits, quantiser.offset)
        for steps, offsets in zip(quantiser.steps, recon):
            header += b"".join(_BAND.pack(s, r) for s, r in zip(steps, offsets))
    import zstandard

    model_tables = tables or {}
    packed = entropy.pack_tables(collector.plan.counts, model_tables)
    words = entropy.encode_calls(collector.plan, entropy.unpack_tables(packed, model_tables))
    compressed = zstandard.ZstdCompressor(level=19).compress(packed)
    return header + _U32.pack(len(compressed)) + compressed + words.astype("<u4").tobytes()


def analyse(frame: np.ndarray, *, colour: bool, quantiser: Quantiser | None, levels: int) -> list[np.ndarray]:
    """Each plane's wavelet coefficients before quantisation (5/3 exact without ``quantiser``,
    else 9/7 on the offset, scaled pixels): what :func:`encode` codes, and what fitting measures."""
    pixels = frame.astype(np.int64)
    if colour:
        pixels = transform.forward_colour(pixels)
    planes = []
    for index in range(pixels.shape[-1]):
        plane = pixels[..., index]
        if quantiser is not None:
            plane = (plane - quantiser.offset) << quantiser.fraction_bits
        planes.append(transform.forward(plane, levels, LIFTINGS[0 if quantiser is None else 1]))
    return planes


def decode(
    data: bytes, shape: tuple[int, ...], tables: dict[int, np.ndarray] | None = None
) -> tuple[np.ndarray, bool]:
    """Stream -> ``(H, W, C)`` int64 pixels (not yet clipped) and whether it was lossy.

    ``shape`` comes from the checked payload metadata; the stream must declare exactly it, and
    every size it declares is checked before anything is allocated for it. ``tables``: the
    model's frequency tables, which the stream may name instead of sending its own.
    """
    height, width, planes = shape
    flags, levels, lifting, check, offset = _read_header(data, height, width, planes)
    colour = bool(flags & COLOUR)
    quantiser = None
    if flags & LOSSY:
        quantiser, offset = _read_quantiser(data, offset, (height, width, planes), levels)
    if len(data) < offset + _U32.size:
        raise PayloadFormatError("wavelet stream: truncated tables")
    (table_length,) = _U32.unpack_from(data, offset)
    offset += _U32.size
    if table_length > _MAX_TABLE_BYTES or offset + table_length > len(data):
        raise PayloadFormatError("wavelet stream: frequency tables truncated or too large")
    models = entropy.unpack_tables(_inflate(data[offset:offset + table_length]), tables or {})
    offset += table_length
    if (len(data) - offset) % 4:
        raise PayloadFormatError("wavelet stream: entropy-coded data is not whole 32-bit words")
    words = np.frombuffer(data, dtype="<u4", offset=offset).astype(np.uint32)
    decoder = entropy.Decoder(words, models)
    filler = bands.Filler(decoder)
    out = np.empty((height, width, planes), dtype=np.int64)
    crc = 0
    for index in range(planes):
        coefficients = np.zeros((height, width), dtype=np.int64)
        bands.traverse(coefficients, levels, _kind(index, colour), filler)
        crc = _crc(coefficients, crc)
        _integrate_low(coefficients, levels)
        if quantiser is not None:
            coefficients = _dequantise(coefficients, levels, quantiser.steps[index], quantiser.recon[index])
        plane = transform.inverse(coefficients, levels, LIFTINGS[lifting])
        if quantiser is not None:
            half = (1 << quantiser.fraction_bits) >> 1
            plane = ((plane + half) >> quantiser.fraction_bits) + quantiser.offset
        out[..., index] = plane
    decoder.finish()
    if crc != check:
        raise PayloadFormatError("wavelet stream: decoded coefficients fail the stream's CRC (the stream was altered)")
    if colour:
        out = transform.inverse_colour(out)
    return out, quantiser is not None


def _read_header(data: bytes, height: int, width: int, planes: int) -> tuple[int, int, int, int, int]:
    """(flags, levels, lifting, CRC, offset after the header), each checked against the payload's frame."""
    if len(data) < _HEADER.size:
        raise PayloadFormatError("wavelet stream: truncated header")
    magic, flags, levels, lifting, declared_planes, rows, columns, check = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise PayloadFormatError("wavelet stream: bad magic")
    if (rows, columns, declared_planes) != (height, width, planes):
        raise PayloadFormatError(
            f"wavelet stream declares {rows} x {columns} x {declared_planes}, the payload {height} x {width} x {planes}"
        )
    if flags & ~(LOSSY | COLOUR) or lifting >= len(LIFTINGS) or levels > transform.levels_for(height, width):
        raise PayloadFormatError(f"wavelet stream: unknown flags {flags}, lifting {lifting} or {levels} levels")
    if flags & COLOUR and planes != 3:
        raise PayloadFormatError("wavelet stream: a colour transform on a frame without 3 planes")
    return flags, levels, lifting, check, _HEADER.size


def _read_quantiser(data: bytes, offset: int, shape: tuple[int, int, int], levels: int) -> tuple[Quantiser, int]:
    height, width, planes = shape
    band_count = len(transform.band_slices(height, width, levels))
    if len(data) < offset + _LOSSY_HEADER.size + planes * band_count * _BAND.size:
        raise PayloadFormatError("wavelet stream: truncated quantiser")
    fraction_bits, pixel_offset = _LOSSY_HEADER.unpack_from(data, offset)
    offset += _LOSSY_HEADER.size
    steps, recon = [], []
    for _ in range(planes):
        pairs = [_BAND.unpack_from(data, offset + i * _BAND.size) for i in range(band_count)]
        offset += band_count * _BAND.size
        steps.append(tuple(p[0] for p in pairs))
        recon.append(tuple(p[1] for p in pairs))
    if fraction_bits > 8 or abs(pixel_offset) > 1 << 32 or any(not 1 <= s <= MAX_STEP for s in sum(steps, ())) \
            or any(not -64 <= r < 64 for r in sum(recon, ())):
        raise PayloadFormatError("wavelet stream: quantiser out of range")
    return Quantiser(fraction_bits, pixel_offset, tuple(steps), tuple(recon)), offset


def _crc(coefficients: np.ndarray, crc: int) -> int:
    """CRC-32 of a plane as little-endian int64, read in place (no copy when it already is one)."""
    return zlib.crc32(np.ascontiguousarray(coefficients, dtype="<i8").data, crc)


def _kind(index: int, colour: bool) -> int:
    """Context set of a plane: the first plane (grey, luma, R) and the others (chroma) differ."""
    return 1 if index > 0 else 0


def _differentiate_low(coefficients: np.ndarray, levels: int) -> None:
    rect = transform.band_slices(coefficients.shape[0], coefficients.shape[1], levels)[0][2]
    coefficients[rect] = bands.low_differences(coefficients[rect])


def _integrate_low(coefficients: np.ndarray, levels: int) -> None:
    rect = transform.band_slices(coefficients.shape[0], coefficients.shape[1], levels)[0][2]
    coefficients[rect] = bands.undo_low_differences(coefficients[rect])


def _dequantise(q: np.ndarray, levels: int, steps: tuple[int, ...], recon: tuple[int, ...]) -> np.ndarray:
    out = np.empty_like(q)
    shift = STEP_FRACTION + OFFSET_FRACTION
    for (_level, _name, rect), step, offset in zip(transform.band_slices(q.shape[0], q.shape[1], levels), steps, recon):
        band = q[rect]
        magnitude = np.abs(band)
        # |c| = (|q| + offset / 64) * step, rounded; offset may pull towards zero (negative).
        value = np.maximum(((magnitude << OFFSET_FRACTION) + offset) * step + (1 << (shift - 1)), 0) >> shift
        np.multiply(np.sign(band), value, out=out[rect])  # 0 stays 0, the sign comes back
    return out


def _inflate(blob: bytes) -> bytes:
    import zstandard

    try:
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=_MAX_TABLE_BYTES)
    except zstandard.ZstdError as exc:
        raise PayloadFormatError(f"wavelet stream: frequency tables do not decode ({exc})") from exc
