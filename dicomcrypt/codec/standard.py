"""The ``standard`` mode's pixel coding: the pixels themselves, losslessly, no model.

This is the paper's baseline ("AES without autoencoders") and the path for objects the model
cannot serve: palette colour, 1-bit segmentations, 32-bit and float data. Signed samples are
offset into the unsigned range (an exact, invertible shift) so JPEG-LS can take them.
"""

from __future__ import annotations

import numpy as np

from dicomcrypt.codec import lossless


def encode_pixels(frames: np.ndarray) -> bytes:
    """Code ``(F, H, W, C)`` frames exactly; floats and 32-bit data go to zstd."""
    return lossless.encode_frames(to_unsigned(frames))


def decode_pixels(blob: bytes, shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
    """Inverse of :func:`encode_pixels` for frames of ``shape`` and ``dtype``."""
    dtype = np.dtype(dtype)
    return from_unsigned(lossless.decode_frames(blob, shape, stored_dtype(dtype)), dtype)


def stored_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the coded frames hold: unsigned of the same width for signed data, else ``dtype``."""
    dtype = np.dtype(dtype)
    return np.dtype(f"u{dtype.itemsize}") if dtype.kind == "i" else dtype


def to_unsigned(frames: np.ndarray) -> np.ndarray:
    """Signed samples as offset binary (exact, invertible); other dtypes unchanged."""
    if frames.dtype.kind != "i":
        return frames
    unsigned = stored_dtype(frames.dtype)
    # Flipping the sign bit maps two's complement onto offset binary: -32768 -> 0, 0 -> 32768.
    return frames.view(unsigned) ^ _sign_bit(unsigned)


def from_unsigned(stored: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`to_unsigned` for original ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind != "i":
        return stored
    return (stored ^ _sign_bit(stored.dtype)).view(dtype)


def _sign_bit(unsigned: np.dtype) -> np.unsignedinteger:
    return unsigned.type(1 << (8 * unsigned.itemsize - 1))
