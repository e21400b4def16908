"""The lossless residual: what the decoder's prediction missed, coded exactly.

``residual = (original - prediction + 2**(b-1)) mod 2**b`` in the storage width ``b`` (8 or
16 bits). The modular form makes the inverse exact whatever the prediction is, even where it
is far off (padding, clipping), and keeps small errors near the middle of the range, where
JPEG-LS codes them cheaply. The receiver adds the same prediction back, which is why the
prediction must be bit-identical on both sides (see ``codec.fixed_point``).
"""

from __future__ import annotations

import numpy as np

from dicomcrypt.codec import lossless

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def encode_residual(original: np.ndarray, prediction: np.ndarray) -> bytes:
    """Code ``original - prediction`` modulo the storage width of ``original``'s dtype."""
    if original.shape != prediction.shape:
        raise ValueError(f"prediction shape {prediction.shape} != original shape {original.shape}")
    modulus, unsigned = _width(original.dtype)
    shifted = (original.astype(np.int64) - prediction.astype(np.int64) + modulus // 2) % modulus
    return lossless.encode_frames(shifted.astype(unsigned))


def decode_residual(blob: bytes, prediction: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """Add the residual back to ``prediction``; returns values of ``dtype``, exactly."""
    dtype = np.dtype(dtype)
    modulus, unsigned = _width(dtype)
    shifted = lossless.decode_frames(blob, prediction.shape, unsigned)
    total = (shifted.astype(np.int64) - modulus // 2 + prediction.astype(np.int64)) % modulus
    # Reinterpret the low bits in the stored width: two's complement for signed data.
    return total.astype(unsigned).view(dtype)


def _width(dtype: np.dtype) -> tuple[int, type]:
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or dtype.itemsize not in _UNSIGNED:
        raise ValueError(f"residual coding needs 8, 16 or 32-bit integers, not {dtype}")
    return 1 << (8 * dtype.itemsize), _UNSIGNED[dtype.itemsize]
