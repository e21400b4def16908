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
    return lossless.encode_frames(_to_unsigned(frames))


def decode_pixels(blob: bytes, shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
    """Inverse of :func:`encode_pixels` for frames of ``shape`` and ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "i":
        unsigned = np.dtype(f"u{dtype.itemsize}")
        stored = lossless.decode_frames(blob, shape, unsigned)
        return (stored ^ _sign_bit(unsigned)).view(dtype)
    return lossless.decode_frames(blob, shape, dtype)


def _to_unsigned(frames: np.ndarray) -> np.ndarray:
    if frames.dtype.kind != "i":
        return frames
    unsigned = np.dtype(f"u{frames.dtype.itemsize}")
    # Flipping the sign bit maps two's complement onto offset binary: -32768 -> 0, 0 -> 32768.
    return frames.view(unsigned) ^ _sign_bit(unsigned)


def _sign_bit(unsigned: np.dtype) -> np.unsignedinteger:
    return unsigned.type(1 << (8 * unsigned.itemsize - 1))
