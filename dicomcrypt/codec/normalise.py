"""Integer pixels <-> the [0, 1] floats the autoencoder works on.

Each frame is mapped linearly from its own value range to [0, 1]. The range excludes padding:
BitsStored is not a bound (design.md: a CT that claims 14 bits has -2000 padding in 21 % of its
pixels), and stretching the range to include padding costs the tissue most of its contrast.
The parameters travel in the payload, and :func:`from_unit` is written with plain IEEE
float64 operations (multiply, then add, then floor) so sender and receiver compute the same
integers from the same decoder output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

import numpy as np

from dicomcrypt.errors import PayloadFormatError

# A minimum value counts as padding when it covers at least this share of a frame's pixels
# and sits apart from the next value by at least this share of the frame's range.
_PADDING_MIN_SHARE = 0.05
_PADDING_MIN_GAP = 0.02


@dataclass(frozen=True)
class Normalisation:
    """Per-frame value ranges; ``low[f]`` maps to 0.0 and ``high[f]`` to 1.0.

    ``padding`` is the value left out of the ranges (None when there is none). The model
    cannot reproduce it (it clips to ``low``), so its positions travel as a mask and the
    reconstruction puts it back exactly.
    """

    low: tuple[int, ...]
    high: tuple[int, ...]
    padding: int | None = None

    def to_json(self) -> dict[str, object]:
        return {"low": list(self.low), "high": list(self.high), "padding": self.padding}

    @classmethod
    def from_json(cls, data: object) -> Normalisation:
        """Inverse of :meth:`to_json`; PayloadFormatError unless it is exactly that shape."""
        if not isinstance(data, dict):
            raise PayloadFormatError(f"payload: normalisation must be an object, not {data!r}")
        low, high, padding = data.get("low"), data.get("high"), data.get("padding")
        if not (_int_list(low) and _int_list(high) and len(low) == len(high)):
            raise PayloadFormatError(
                f"payload: normalisation low and high must be integer lists of one length, not {low!r} and {high!r}"
            )
        if padding is not None and not _is_int(padding):
            raise PayloadFormatError(f"payload: normalisation padding must be an integer or null, not {padding!r}")
        return cls(tuple(low), tuple(high), padding)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(_is_int(v) for v in value)


def fit(frames: np.ndarray, padding_value: int | None = None) -> Normalisation:
    """Choose each frame's range from its pixels, leaving padding out."""
    lows: list[int] = []
    highs: list[int] = []
    padding = padding_value if padding_value is not None and bool((frames == padding_value).any()) else None
    for frame in frames:
        low, high, detected = _frame_range(frame, padding)
        lows.append(low)
        highs.append(high)
        if padding is None and detected is not None:
            padding = detected
    return Normalisation(tuple(lows), tuple(highs), padding)


def padding_mask(frames: np.ndarray, norm: Normalisation) -> np.ndarray | None:
    """Where the padding value sits, or None when the image has no padding."""
    if norm.padding is None:
        return None
    mask = frames == norm.padding
    return mask if mask.any() else None


def encode_mask(mask: np.ndarray) -> bytes:
    """A boolean mask as packed bits, zstd-compressed (padding is a few large regions)."""
    import zstandard

    return zstandard.ZstdCompressor(level=9).compress(np.packbits(mask.reshape(-1)).tobytes())


def decode_mask(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_mask` for a mask of ``shape``."""
    import zstandard

    count = int(np.prod(shape))
    try:
        packed = zstandard.ZstdDecompressor().decompress(blob, max_output_size=(count + 7) // 8)
    except zstandard.ZstdError as exc:
        raise PayloadFormatError(f"padding mask does not decode ({exc})") from exc
    if len(packed) != (count + 7) // 8:
        raise PayloadFormatError("padding mask has the wrong size")
    return np.unpackbits(np.frombuffer(packed, np.uint8), count=count).astype(bool).reshape(shape)


def to_unit(frames: np.ndarray, norm: Normalisation) -> np.ndarray:
    """Map ``(F, H, W, C)`` integers to float32 in [0, 1]; padding clips to 0."""
    out = np.empty(frames.shape, dtype=np.float32)
    for index, frame in enumerate(frames):
        low, span = norm.low[index], norm.high[index] - norm.low[index]
        scaled = (frame.astype(np.float64) - low) / span
        out[index] = np.clip(scaled, 0.0, 1.0)
    return out


def from_unit(unit: np.ndarray, norm: Normalisation, dtype: np.dtype | str) -> np.ndarray:
    """Map decoder output in [0, 1] back to integers of ``dtype``, deterministically."""
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    out = np.empty(unit.shape, dtype=dtype)
    for index, frame in enumerate(unit):
        low = float(norm.low[index])
        span = float(norm.high[index] - norm.low[index])
        values = np.floor(np.add(np.multiply(frame.astype(np.float64), span), low) + 0.5)
        out[index] = np.clip(values, info.min, info.max).astype(dtype)
    return out


def _frame_range(frame: np.ndarray, padding_value: int | None) -> tuple[int, int, int | None]:
    """(low, high, detected padding value or None) for one frame."""
    values = frame.reshape(-1)
    if padding_value is not None:
        kept = values[values != padding_value]
        if kept.size:
            values = kept
    low, high = int(values.min()), int(values.max())
    skipped = _skip_padding_minimum(values, low, high)
    detected = low if padding_value is None and skipped != low else None
    return skipped, max(high, skipped + 1), detected


def _skip_padding_minimum(values: np.ndarray, low: int, high: int) -> int:
    """Return the second-lowest value when the lowest one looks like padding."""
    at_min = values == low
    share = float(at_min.mean())
    if share < _PADDING_MIN_SHARE or share == 1.0:
        return low
    next_low = int(values[~at_min].min())
    if next_low - low >= _PADDING_MIN_GAP * (high - low):
        return next_low
    return low
