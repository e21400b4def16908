"""The ``standard`` mode: the pixels themselves, losslessly, no model.

This is the paper's baseline ("AES without autoencoders") and the path for objects the model
cannot serve: palette colour, 1-bit segmentations, 32-bit and float data. Frames are coded
with JPEG-LS, zstd where JPEG-LS cannot take them (:mod:`dicomcrypt.codec.lossless`), signed
samples as offset binary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from dicomcrypt.codec import lossless
from dicomcrypt.codec.coders.base import Coder, CodingContext, Packed
from dicomcrypt.envelope import Mode
from dicomcrypt.payload import section

if TYPE_CHECKING:
    from dicomcrypt.dicom import PixelFormat
    from dicomcrypt.payload import PayloadMeta


class StandardCoder(Coder):
    """Section ``pixels``: every frame coded exactly."""

    mode = Mode.STANDARD

    def pack(self, frames: np.ndarray, fmt: PixelFormat, context: CodingContext) -> Packed:
        return Packed({"pixels": encode_pixels(frames)})

    def unpack(self, sections: Mapping[str, bytes], meta: PayloadMeta, context: CodingContext) -> np.ndarray:
        return decode_pixels(section(sections, "pixels"), meta.shape, meta.dtype)


def encode_pixels(frames: np.ndarray) -> bytes:
    """Code ``(F, H, W, C)`` frames exactly; floats and 32-bit data go to zstd."""
    return lossless.encode_frames(lossless.to_unsigned(frames))


def decode_pixels(blob: bytes, shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
    """Inverse of :func:`encode_pixels` for frames of ``shape`` and ``dtype``."""
    dtype = np.dtype(dtype)
    return lossless.from_unsigned(lossless.decode_frames(blob, shape, lossless.stored_dtype(dtype)), dtype)
