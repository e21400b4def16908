"""The integer lifting wavelet and the reversible colour transform: pixels <-> bands, integers only.

One lifting structure serves both paths. Each lifting step adds to one polyphase half a rounded
fixed-point multiple of the sum of its two neighbours in the other half::

    target[i] += (tap * (left + right) + 2**(P-1)) >> P

Whatever the taps, every step is undone exactly by subtracting the same integer, so the transform
is reversible by construction and the same integers come out on every machine (int64 numpy,
no floating point). The exact path uses LeGall 5/3 taps (JPEG 2000's reversible wavelet); the
lossy path uses the CDF 9/7 taps in fixed point with the scaling step left out (it is folded
into the per-band quantiser steps, :func:`band_gains`). Boundaries are whole-sample symmetric,
so any size (odd, 1 pixel) works.

Layout: Mallat, in place in one array: after a level the top-left quadrant holds the low band,
which the next level splits again. :func:`band_slices` names every band's rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRECISION = 12  # fixed-point bits of the lifting taps
MAX_LEVELS = 5


@dataclass(frozen=True)
class Lifting:
    """A lifting wavelet: alternating predict (odd from even) and update (even from odd) taps."""

    name: str
    taps: tuple[int, ...]  # fixed point, PRECISION fractional bits; even index = predict, odd = update


LEGALL_53 = Lifting("5/3", (-(1 << (PRECISION - 1)), 1 << (PRECISION - 2)))
CDF_97 = Lifting(
    "9/7",
    tuple(round(t * (1 << PRECISION)) for t in (-1.586134342059924, -0.052980118572961, 0.882911075530934,
                                                 0.443506852043971)),
)


def levels_for(height: int, width: int, wanted: int = MAX_LEVELS) -> int:
    """Decomposition levels for an image: up to ``wanted``, keeping the low band at least 4 x 4."""
    levels = 0
    while levels < wanted and min(height, width) >> (levels + 1) >= 4:
        levels += 1
    return levels


def band_slices(height: int, width: int, levels: int) -> list[tuple[int, str, tuple[slice, slice]]]:
    """(level, orientation, rectangle) of every band, in coding order: the low band, then the
    detail bands from the coarsest level to the finest, each level HL, LH, HH."""
    sizes = [(height, width)]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    low_h, low_w = sizes[levels]
    bands = [(levels, "LL", (slice(0, low_h), slice(0, low_w)))]
    for level in range(levels, 0, -1):
        h, w = sizes[level - 1]
        lh, lw = sizes[level]
        bands.append((level, "HL", (slice(0, lh), slice(lw, w))))
        bands.append((level, "LH", (slice(lh, h), slice(0, lw))))
        bands.append((level, "HH", (slice(lh, h), slice(lw, w))))
    return bands


def forward(image: np.ndarray, levels: int, lifting: Lifting) -> np.ndarray:
    """2-D forward transform of an int64 ``(H, W)`` array; returns a new array in Mallat layout."""
    out = np.array(image, dtype=np.int64, copy=True)
    h, w = out.shape
    for _ in range(levels):
        region = out[:h, :w]
        region[:] = _split(_analyse(region, lifting, axis=1), axis=1)
        region[:] = _split(_analyse(region, lifting, axis=0), axis=0)
        h, w = (h + 1) // 2, (w + 1) // 2
    return out


def inverse(coefficients: np.ndarray, levels: int, lifting: Lifting) -> np.ndarray:
    """Exact inverse of :func:`forward` (for any integers, also quantised ones)."""
    out = np.array(coefficients, dtype=np.int64, copy=True)
    sizes = [out.shape]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    for level in range(levels, 0, -1):
        h, w = sizes[level - 1]
        region = out[:h, :w]
        region[:] = _synthesise(_merge(region, axis=0), lifting, axis=0)
        region[:] = _synthesise(_merge(region, axis=1), lifting, axis=1)
    return out


def _analyse(x: np.ndarray, lifting: Lifting, axis: int) -> np.ndarray:
    x = np.array(x, copy=True)
    even, odd = _halves(x, axis)
    for index, tap in enumerate(lifting.taps):
        if index % 2 == 0:
            odd += _step(tap, *_predict_neighbours(even, odd, axis))
        else:
            even += _step(tap, *_update_neighbours(even, odd, axis))
    return x


def _synthesise(x: np.ndarray, lifting: Lifting, axis: int) -> np.ndarray:
    x = np.array(x, copy=True)
    even, odd = _halves(x, axis)
    for index in range(len(lifting.taps) - 1, -1, -1):
        tap = lifting.taps[index]
        if index % 2 == 0:
            odd -= _step(tap, *_predict_neighbours(even, odd, axis))
        else:
            even -= _step(tap, *_update_neighbours(even, odd, axis))
    return x


def _halves(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Views of the even and odd samples along ``axis`` (writing them writes ``x``)."""
    if axis == 0:
        return x[0::2], x[1::2]
    return x[:, 0::2], x[:, 1::2]


def _step(tap: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return (tap * (left + right) + (1 << (PRECISION - 1))) >> PRECISION


def _take(x: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    return x[index] if axis == 0 else x[:, index]


def _predict_neighbours(even: np.ndarray, odd: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """odd[i] sits between even[i] and even[i+1] (mirrored to even[i] past the end)."""
    n_odd, n_even = odd.shape[axis], even.shape[axis]
    index = np.arange(n_odd)
    return _take(even, index, axis), _take(even, np.minimum(index + 1, n_even - 1), axis)


def _update_neighbours(even: np.ndarray, odd: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """even[i] sits between odd[i-1] and odd[i] (mirrored at both ends)."""
    n_odd, n_even = odd.shape[axis], even.shape[axis]
    if n_odd == 0:
        zeros = np.zeros_like(even)
        return zeros, zeros
    index = np.arange(n_even)
    return _take(odd, np.maximum(index - 1, 0), axis), _take(odd, np.minimum(index, n_odd - 1), axis)


def _split(x: np.ndarray, axis: int) -> np.ndarray:
    """Interleaved -> [even samples | odd samples] along ``axis``."""
    even, odd = _halves(x, axis)
    return np.concatenate([even, odd], axis=axis)


def _merge(x: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`_split`."""
    n = x.shape[axis]
    n_even = (n + 1) // 2
    out = np.empty_like(x)
    even, odd = _halves(out, axis)
    if axis == 0:
        even[:], odd[:] = x[:n_even], x[n_even:]
    else:
        even[:], odd[:] = x[:, :n_even], x[:, n_even:]
    return out


def forward_colour(planes: np.ndarray) -> np.ndarray:
    """Reversible colour transform (YCoCg-R) of int64 ``(H, W, 3)`` RGB; returns Y, Co, Cg planes."""
    r, g, b = (planes[..., i].astype(np.int64) for i in range(3))
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    y = t + (cg >> 1)
    return np.stack([y, co, cg], axis=-1)


def inverse_colour(planes: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`forward_colour`."""
    y, co, cg = (planes[..., i] for i in range(3))
    t = y - (cg >> 1)
    g = cg + t
    b = t - (co >> 1)
    r = b + co
    return np.stack([r, g, b], axis=-1)


def band_gains(height: int, width: int, levels: int, lifting: Lifting) -> list[float]:
    """Synthesis L2 gain of each band (coding order): how much a unit error in one coefficient
    of the band costs in the image. Quantiser steps are divided by it so that every band adds
    the same squared error per coefficient. Measured on the integer inverse with a large impulse."""
    scale = 1 << 16
    gains = []
    zero = np.zeros((height, width), dtype=np.int64)
    for _level, _name, (rows, cols) in band_slices(height, width, levels):
        coefficients = zero.copy()
        r = (rows.start + rows.stop) // 2
        c = (cols.start + cols.stop) // 2
        coefficients[r, c] = scale
        image = inverse(coefficients, levels, lifting)
        gains.append(float(np.sqrt(np.sum((image.astype(np.float64) / scale) ** 2))))
    return gains
