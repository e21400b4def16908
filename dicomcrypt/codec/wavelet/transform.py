"""The integer lifting wavelet and the reversible colour transform: pixels <-> bands, integers only.

One lifting structure serves both paths. Each lifting step adds to one polyphase half a rounded
fixed-point multiple of the sum of its two neighbours in the other half::

    target[i] += (tap * (left + right) + 2**(P-1)) >> P

Whatever the taps, every step is undone exactly by subtracting the same integer, so the transform
is reversible by construction and the same integers come out on every machine (integer numpy,
no floating point: int32 where a bound from the input's largest value proves nothing can
overflow, which is the 5/3 path on every real image, else int64; the integers are the same
either way). The exact path uses LeGall 5/3 taps (JPEG 2000's reversible wavelet); the lossy
path uses the CDF 9/7 taps in fixed point with the scaling step left out (it is folded into the
per-band quantiser steps, :func:`band_gains`). Boundaries are whole-sample symmetric, so any
size (odd, 1 pixel) works.

Layout: Mallat, in place in one array: after a level the top-left quadrant holds the low band,
which the next level splits again; :func:`band_slices` names every band's rectangle. Each 1-D
pass first separates the even and odd samples (one copy into a scratch buffer), then lifts the
two contiguous halves in place, so a step's neighbours are plain slices, not gathered copies.
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
    """2-D forward transform of an integer ``(H, W)`` array; returns a new int64 array in Mallat layout."""
    image = np.asarray(image)
    work = _working_dtype(_max_abs(image), levels, lifting)
    out = np.array(image, dtype=work, copy=True)
    scratch = _Scratch(out.shape, work)
    h, w = out.shape
    for _ in range(levels):
        region, buffer = out[:h, :w], scratch.image[:h, :w]
        _deinterleave(region, buffer)
        _lift(buffer, lifting, scratch.rows, inverse=False)
        _deinterleave(buffer.T, region.T)  # columns: the same on the transposed views
        _lift(region.T, lifting, scratch.columns.T, inverse=False)
        h, w = (h + 1) // 2, (w + 1) // 2
    return out.astype(np.int64, copy=False)


def inverse(coefficients: np.ndarray, levels: int, lifting: Lifting) -> np.ndarray:
    """Exact inverse of :func:`forward` (for any integers, also quantised ones); returns int64."""
    coefficients = np.asarray(coefficients)
    work = _working_dtype(_max_abs(coefficients), levels, lifting)
    out = np.array(coefficients, dtype=work, copy=True)
    scratch = _Scratch(out.shape, work)
    sizes = [out.shape]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    for level in range(levels, 0, -1):
        h, w = sizes[level - 1]
        region, buffer = out[:h, :w], scratch.image[:h, :w]
        _lift(region.T, lifting, scratch.columns.T, inverse=True)
        _interleave(region.T, buffer.T)
        _lift(buffer, lifting, scratch.rows, inverse=True)
        _interleave(buffer, region)
    return out.astype(np.int64, copy=False)


class _Scratch:
    """Buffers one transform reuses at every level: a whole-image one and the step sums' (rows, columns)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        height, width = shape
        self.image = np.empty((height, width), dtype=dtype)
        self.rows = np.empty((height, (width + 1) // 2), dtype=dtype)
        self.columns = np.empty(((height + 1) // 2, width), dtype=dtype)


def _deinterleave(source: np.ndarray, target: np.ndarray) -> None:
    """``target`` = [even samples | odd samples] of ``source`` along the last axis."""
    n_even = (source.shape[1] + 1) // 2
    target[:, :n_even] = source[:, 0::2]
    target[:, n_even:] = source[:, 1::2]


def _interleave(source: np.ndarray, target: np.ndarray) -> None:
    """Inverse of :func:`_deinterleave`: [even | odd] halves along the last axis back to alternate samples."""
    n_even = (source.shape[1] + 1) // 2
    target[:, 0::2] = source[:, :n_even]
    target[:, 1::2] = source[:, n_even:]


def _lift(x: np.ndarray, lifting: Lifting, sums: np.ndarray, *, inverse: bool) -> None:
    """Run (or undo) every lifting step along the last axis of ``x``, whose columns are [even | odd]
    halves, in place. ``sums`` is scratch of at least x's rows by ceil(columns / 2)."""
    n = x.shape[1]
    n_even = (n + 1) // 2
    even, odd = x[:, :n_even], x[:, n_even:]
    order = range(len(lifting.taps) - 1, -1, -1) if inverse else range(len(lifting.taps))
    for index in order:
        tap = lifting.taps[index]
        if index % 2 == 0:  # predict: odd[i] from even[i] and even[i+1] (even[i] twice past the end)
            target, total = odd, _predict_sums(even, odd, sums)
        else:  # update: even[i] from odd[i-1] and odd[i] (mirrored at both ends)
            if odd.shape[1] == 0:
                continue  # a 1-sample row: its step adds (tap * 0 + 2**(P-1)) >> P = 0
            target, total = even, _update_sums(even, odd, sums)
        _round_tap(total, tap)
        if inverse:
            target -= total
        else:
            target += total


def _predict_sums(even: np.ndarray, odd: np.ndarray, sums: np.ndarray) -> np.ndarray:
    n_even, n_odd = even.shape[1], odd.shape[1]
    total = sums[: odd.shape[0], :n_odd]
    inner = min(n_odd, n_even - 1)
    np.add(even[:, :inner], even[:, 1:inner + 1], out=total[:, :inner])
    if inner < n_odd:  # even length: the last odd sample mirrors its left neighbour
        np.left_shift(even[:, n_even - 1:], 1, out=total[:, inner:])
    return total


def _update_sums(even: np.ndarray, odd: np.ndarray, sums: np.ndarray) -> np.ndarray:
    n_even, n_odd = even.shape[1], odd.shape[1]
    total = sums[: even.shape[0], :n_even]
    np.left_shift(odd[:, :1], 1, out=total[:, :1])
    np.add(odd[:, :n_odd - 1], odd[:, 1:], out=total[:, 1:n_odd])
    if n_even > n_odd:  # odd length: the last even sample mirrors its right neighbour
        np.left_shift(odd[:, n_odd - 1:], 1, out=total[:, n_odd:])
    return total


def _round_tap(total: np.ndarray, tap: int) -> None:
    """``total`` <- ``(tap * total + 2**(P-1)) >> P`` in place. A tap of +-2**k needs no product:
    ``(+-2**k * s + 2**(P-1)) >> P == (+-s + 2**(P-1-k)) >> (P-k)`` exactly (floor division by a
    power of two), which is what keeps the 5/3 path inside int32."""
    magnitude = abs(tap)
    if magnitude and magnitude & (magnitude - 1) == 0 and magnitude <= 1 << (PRECISION - 1):
        k = magnitude.bit_length() - 1
        half = 1 << (PRECISION - 1 - k)
        if tap < 0:
            np.subtract(half, total, out=total)
        else:
            total += half
        total >>= PRECISION - k
        return
    total *= tap
    total += 1 << (PRECISION - 1)
    total >>= PRECISION


def _max_abs(values: np.ndarray) -> int:
    if values.size == 0:
        return 0
    return max(abs(int(values.max())), abs(int(values.min())))


def _working_dtype(max_abs: int, levels: int, lifting: Lifting) -> np.dtype:
    """int32 when no intermediate of the transform can leave it, else int64.

    A bound, not a measurement: per 1-D pass, a step adds at most ``(|tap| * 2B + 2**(P-1)) >> P``
    to its target, B bounding the other half; the products (or, for power-of-two taps, the sums)
    must stay below 2**31. Each pass and each level start from the bound the previous one left, which
    covers the forward and the inverse transform alike (they run the same steps, subtracting)."""
    limit = (1 << 31) - 1
    bound = max_abs
    for _ in range(max(levels, 0) * 2):
        even = odd = bound
        for index, tap in enumerate(lifting.taps):
            other = even if index % 2 == 0 else odd
            magnitude = abs(tap)
            power_of_two = magnitude & (magnitude - 1) == 0
            worst = 2 * other + (1 << PRECISION) if power_of_two else magnitude * 2 * other + (1 << PRECISION)
            if worst > limit:
                return np.dtype(np.int64)
            step = (magnitude * 2 * other + (1 << (PRECISION - 1))) >> PRECISION
            if index % 2 == 0:
                odd += step + 1
            else:
                even += step + 1
            if max(even, odd) > limit:
                return np.dtype(np.int64)
        bound = max(even, odd)
    return np.dtype(np.int32)


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
