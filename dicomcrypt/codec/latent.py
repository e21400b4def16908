"""Latent <-> bytes: the part of the payload that replaces the pixels.

The paper sends float32 features, which for its 224x224x3 -> 112x112x3 model are as many bytes as
the 8-bit image they replace. We quantise instead (design.md: float16 loses nothing against
float32; 8 bits per channel with a stored affine scale costs at most 0.13 dB) and compress with
zstd. No torch here: the receiver's parsing and dequantisation are plain numpy, and the
dequantisation is written as two separate IEEE float64 operations (multiply, then add) so every
machine computes the same decoder input (see :mod:`dicomcrypt.codec.fixed_point`).

Layout, version 1 (integers big-endian)::

    4 bytes  magic b"DCLT"
    u8       version (1)
    u8       format: 1 = u8 (affine 8-bit per frame and channel), 2 = f16 (IEEE half)
    u8       downsampling factor of the model (latent size = ceil(original / factor))
    u32      frames F
    u32      latent height h, u32 latent width w
    u16      latent channels C
    u32      original height H, u32 original width W
    u32      tile size (pixels of the original) the codec used
    u8 only: F * C pairs of float32 (low, step), frame-major; value = low + q * step
    rest     one zstd frame: the samples, planar (F, C, h, w); u8, or little-endian float16
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from dicomcrypt.errors import PayloadFormatError

MAGIC = b"DCLT"
VERSION = 1
FORMATS = {"u8": 1, "f16": 2}
_FORMAT_NAMES = {code: name for name, code in FORMATS.items()}
_HEADER = struct.Struct(">4sBBBIIIHIII")
_PARAMS = struct.Struct(">ff")
_ZSTD_LEVEL = 9
# Refuse to allocate more than this for one latent (a 16k x 16k x 1000-frame study is not a latent).
MAX_SAMPLES = 2**31


@dataclass(frozen=True)
class LatentGeometry:
    """What a latent's header declares, read without allocating anything (:func:`read_geometry`)."""

    format: str
    factor: int
    frames: int
    channels: int
    size: tuple[int, int]  # latent height, width
    original_size: tuple[int, int]

    @property
    def samples(self) -> int:
        return self.frames * self.channels * self.size[0] * self.size[1]


@dataclass(frozen=True)
class Latent:
    """A parsed latent: dequantised values and the geometry needed to decode them."""

    values: np.ndarray  # (F, h, w, C) float64, exactly as the receiver's decoder sees them
    format: str
    factor: int
    original_size: tuple[int, int]
    tile: int


def latent_to_bytes(
    latent: np.ndarray,
    *,
    latent_format: str = "u8",
    factor: int,
    original_size: tuple[int, int],
    tile: int,
    levels: int = 256,
) -> bytes:
    """Quantise and serialise ``(F, h, w, C)`` float latents.

    ``levels`` (u8 only, 2..256): how many of the 256 codes are used. Fewer levels make a coarser,
    much smaller latent in the same format (the receiver reads ``low + q * step`` either way): the
    lossless mode uses this, because there the residual carries the detail (docs/models.md).
    """
    if not 2 <= levels <= 256:
        raise ValueError(f"latent levels must be in 2..256, not {levels}")
    if latent_format not in FORMATS:
        raise ValueError(f"latent format must be one of {sorted(FORMATS)}, not {latent_format!r}")
    if latent.ndim != 4 or 0 in latent.shape:
        raise ValueError(f"latent must be a non-empty (F, h, w, C) array, not {latent.shape}")
    if not np.all(np.isfinite(latent)):
        raise ValueError("latent has non-finite values")
    frames, height, width, channels = latent.shape
    _check_geometry(frames, height, width, channels, factor=factor, original_size=original_size)
    header = _HEADER.pack(MAGIC, VERSION, FORMATS[latent_format], factor, frames, height, width, channels,
                          original_size[0], original_size[1], tile)
    planar = np.ascontiguousarray(latent.transpose(0, 3, 1, 2), dtype=np.float32)
    if latent_format == "f16":
        samples, params = planar.astype("<f2"), b""
    else:
        samples, params = _quantise_u8(planar, levels)
    import zstandard

    data = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(samples.tobytes())
    return header + params + data


def read_geometry(blob: bytes) -> LatentGeometry:
    """The header's declared geometry, checked for consistency; nothing is allocated or inflated.

    A receiver checks it against the payload's shape and its model before decoding
    (:func:`dicomcrypt.codec.coders.lossy.check_latent`).
    """
    view = memoryview(blob)
    if len(view) < _HEADER.size:
        raise PayloadFormatError(f"latent: {len(view)} bytes is shorter than the {_HEADER.size}-byte header")
    magic, version, code, factor, frames, height, width, channels, orig_h, orig_w, _ = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise PayloadFormatError("latent: bad magic (not a dicomcrypt latent)")
    if version != VERSION:
        raise PayloadFormatError(f"latent: version {version} is not supported (this build reads {VERSION})")
    if code not in _FORMAT_NAMES:
        raise PayloadFormatError(f"latent: unknown sample format {code}")
    _check_geometry(
        frames, height, width, channels, factor=factor, original_size=(orig_h, orig_w), error=PayloadFormatError
    )
    return LatentGeometry(_FORMAT_NAMES[code], factor, frames, channels, (height, width), (orig_h, orig_w))


def latent_from_bytes(blob: bytes) -> Latent:
    """Parse and dequantise; :class:`PayloadFormatError` on anything malformed."""
    view = memoryview(blob)
    geometry = read_geometry(blob)
    _, _, _, factor, frames, height, width, channels, orig_h, orig_w, tile = _HEADER.unpack_from(view)
    latent_format = geometry.format
    offset = _HEADER.size
    # Stored planar (F, C, h, w); returned channels-last (F, h, w, C).
    shape = (frames, channels, height, width)
    samples = frames * channels * height * width
    if latent_format == "u8":
        size = frames * channels * _PARAMS.size
        params = _read_u8_params(view[offset : offset + size], frames, channels)
        raw = _inflate(bytes(view[offset + size :]), samples)
        q = np.frombuffer(raw, dtype=np.uint8).reshape(shape).transpose(0, 2, 3, 1)
        values = _dequantise_u8(q, params)
    else:
        values = _f16_values(_inflate(bytes(view[offset:]), samples * 2), shape)
    return Latent(values, latent_format, factor, (orig_h, orig_w), tile)


def _read_u8_params(view: memoryview, frames: int, channels: int) -> np.ndarray:
    """The u8 format's per frame and channel ``(low, step)`` pairs, checked finite and non-negative."""
    if len(view) < frames * channels * _PARAMS.size:
        raise PayloadFormatError("latent: quantisation parameters truncated")
    params = np.frombuffer(view, dtype=">f4").reshape(frames, channels, 2)
    if not np.all(np.isfinite(params)) or np.any(params[..., 1] < 0):
        raise PayloadFormatError("latent: quantisation parameters are not finite and non-negative")
    return params


def _inflate(data: bytes, expected: int) -> bytes:
    """The zstd-compressed samples, exactly ``expected`` bytes of them, checked before and after inflating."""
    import zstandard

    try:
        # The frame header states its content size: check it before inflating anything.
        declared = zstandard.get_frame_parameters(data).content_size
        if declared != expected:
            raise PayloadFormatError(f"latent: compressed samples declare {declared} bytes, {expected} expected")
        inflater = zstandard.ZstdDecompressor().decompressobj()
        raw = inflater.decompress(data)
    except zstandard.ZstdError as exc:
        raise PayloadFormatError(f"latent: compressed samples do not decode ({exc})") from exc
    if not inflater.eof or len(raw) != expected:
        raise PayloadFormatError(f"latent: compressed samples truncated ({len(raw)} of {expected} bytes)")
    if inflater.unused_data:
        raise PayloadFormatError("latent: trailing bytes after the compressed samples")
    return raw


def _f16_values(raw: bytes, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Planar float16 samples -> channels-last float64, in one pass; refuses non-finite samples."""
    samples = np.frombuffer(raw, dtype="<f2").reshape(shape).transpose(0, 2, 3, 1)
    if not np.all(np.isfinite(samples)):
        raise PayloadFormatError("latent: float16 samples are not all finite")
    frames, channels, height, width = shape
    values = np.empty((frames, height, width, channels), np.float64)
    values[...] = samples
    return values


def _quantise_u8(planar: np.ndarray, levels: int = 256) -> tuple[np.ndarray, bytes]:
    """Per frame and channel: ``q = round((x - low) / step)``, ``step = (high - low) / (levels - 1)``."""
    low = planar.min(axis=(2, 3)).astype(np.float32)
    high = planar.max(axis=(2, 3)).astype(np.float32)
    step = ((high.astype(np.float64) - low) / (levels - 1)).astype(np.float32)
    safe = np.where(step > 0, step, np.float32(1.0)).astype(np.float64)
    q = np.rint((planar - low[..., None, None].astype(np.float64)) / safe[..., None, None])
    q = np.clip(q, 0, levels - 1).astype(np.uint8)
    params = np.stack([low, step], axis=-1).astype(">f4").tobytes()
    return q, params


def _dequantise_u8(q: np.ndarray, params: np.ndarray) -> np.ndarray:
    """``low + q * step`` for ``q`` of shape (F, h, w, C), in float64, as two separately rounded
    IEEE operations (never fused): ``q * step`` is exact (8-bit times 24-bit significand), the
    addition is correctly rounded, so every machine gets the same bits."""
    low = params[..., 0].astype(np.float64)[:, None, None, :]
    step = params[..., 1].astype(np.float64)[:, None, None, :]
    values = np.empty(q.shape, np.float64, order="C")
    np.multiply(q, step, out=values)
    np.add(values, low, out=values)
    return values


def _check_geometry(
    frames: int,
    height: int,
    width: int,
    channels: int,
    *,
    factor: int,
    original_size: tuple[int, int],
    error: type[Exception] = ValueError,
) -> None:
    orig_h, orig_w = original_size
    if min(frames, height, width, channels, factor, orig_h, orig_w) < 1:
        raise error("latent: a dimension is zero")
    if height != -(-orig_h // factor) or width != -(-orig_w // factor):
        raise error(f"latent: {height}x{width} does not fit an original of {orig_h}x{orig_w} at factor {factor}")
    if frames * channels * height * width > MAX_SAMPLES:
        raise error("latent: too large")
