"""The ``lossy`` mode, the paper's: the autoencoder's quantised latent only.

Sections: ``latent`` (:mod:`dicomcrypt.codec.latent`) and, when the image has padding, the
``padding`` mask, so the padding value comes back exactly (the model cannot reproduce it).
The restored image is the decoder's, a derived image under DICOM's rules. The lossless coder
builds on :func:`encode_latent` and :func:`reconstruct`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from dicomcrypt.codec import latent as latent_codec
from dicomcrypt.codec import normalise
from dicomcrypt.codec.coders import wavelet
from dicomcrypt.codec.coders.base import Coder, CodingContext, Derivation, Packed
from dicomcrypt.envelope import Mode
from dicomcrypt.errors import InvalidInputError, PayloadFormatError
from dicomcrypt.payload import section

if TYPE_CHECKING:
    from dicomcrypt.dicom import PixelFormat
    from dicomcrypt.payload import PayloadMeta

LOSSY_METHOD = "DICOMCRYPT_AE"  # Lossy Image Compression Method (0028,2114), CS <= 16 chars
FULL_LEVELS = 256  # an 8-bit latent's quantisation levels when nothing else is asked


class LossyCoder(Coder):
    """The decoder's image of the latent; what it costs in quality is what it saves in bytes."""

    mode = Mode.LOSSY
    needs_model = True
    exact = False

    def pack(self, frames: np.ndarray, fmt: PixelFormat, context: CodingContext) -> Packed:
        if wavelet.is_wavelet(context.model):
            return wavelet.pack_lossy(frames, fmt, context)
        if context.psnr is not None:
            raise InvalidInputError(
                f"a PSNR target needs the wavelet codec; model {context.model.info.model_id} is an autoencoder"
            )
        sections, norm = encode_latent(frames, fmt, context, levels=FULL_LEVELS)
        return Packed(sections, {"normalisation": norm})

    def unpack(self, sections: Mapping[str, bytes], meta: PayloadMeta, context: CodingContext) -> np.ndarray:
        if wavelet_payload(meta, context):
            check_model_payload(meta)
            return wavelet.unpack_lossy(sections, meta, context)
        check_latent(sections, meta, context)
        return reconstruct(context.model, sections, normalisation_of(meta), meta.shape, meta.dtype)

    def derivation(self, frames: np.ndarray, sections: Mapping[str, bytes], model_id: str) -> Derivation:
        if "pixels" in sections:
            return Derivation(
                ratio=frames.nbytes / max(1, len(sections["pixels"])),
                method=wavelet.LOSSY_METHOD,
                description=f"Lossy reconstruction by dicomcrypt wavelet codec {model_id}",
            )
        return Derivation(
            ratio=frames.nbytes / max(1, len(section(sections, "latent"))),
            method=LOSSY_METHOD,
            description=f"Lossy reconstruction by dicomcrypt autoencoder {model_id}",
        )


def encode_latent(
    frames: np.ndarray, fmt: PixelFormat, context: CodingContext, *, levels: int
) -> tuple[dict[str, bytes], normalise.Normalisation]:
    """The ``latent`` (and ``padding``) sections of ``frames``, and the normalisation they used."""
    norm = normalise.fit(frames, fmt.padding_value)
    latent = context.model.encode(normalise.to_unit(frames, norm), latent_format=context.latent_format, levels=levels)
    context.metrics["latent_bytes"] = float(len(latent))
    sections = {"latent": latent}
    mask = normalise.padding_mask(frames, norm)
    if mask is not None:
        sections["padding"] = normalise.encode_mask(mask)
    return sections, norm


def reconstruct(
    model: Any, sections: Mapping[str, bytes], norm: normalise.Normalisation, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """The decoder's image in stored integers, with padding put back where the mask says.

    Sender (for the lossless residual) and receiver run exactly this, and every step is
    deterministic, so both get the same integers.
    """
    frames = normalise.from_unit(model.decode(section(sections, "latent")), norm, dtype)
    if frames.shape != tuple(shape):
        raise PayloadFormatError(f"decoded latent has shape {frames.shape}, expected {tuple(shape)}")
    if "padding" in sections:
        if norm.padding is None:
            raise PayloadFormatError("payload: a padding mask without a padding value")
        frames[normalise.decode_mask(sections["padding"], frames.shape)] = norm.padding
    return frames


def wavelet_payload(meta: PayloadMeta, context: CodingContext) -> bool:
    """The payload is the wavelet codec's (``codec`` in its metadata); its model must be one too."""
    if meta.codec is None:
        if wavelet.is_wavelet(context.model):
            raise PayloadFormatError("payload: an autoencoder payload names a wavelet codec model")
        return False
    if meta.codec != wavelet.CODEC or not wavelet.is_wavelet(context.model):
        raise PayloadFormatError(f"payload: codec {meta.codec!r} with model {context.model.info.model_id}")
    return True


def check_model_payload(meta: PayloadMeta) -> None:
    """A model-coded payload describes pixels a model codes (8 to 16-bit integers, 1 or 3 samples)."""
    if not meta.pixel_format.model_ready:
        raise PayloadFormatError(
            f"payload: a model-coded payload for {meta.dtype.str} pixels with {meta.shape[3]} samples "
            "(models code 8 to 16-bit integers with 1 or 3 samples)"
        )


def check_latent(sections: Mapping[str, bytes], meta: PayloadMeta, context: CodingContext) -> None:
    """Before the decoder runs: the latent's declared geometry is the payload's image at the
    model's factor and channels, and decoding it stays within the decode-work limit.

    The latent cannot declare a cheaper or larger image than the metadata (already within the
    limits), so the decoder's work is fixed by the validated shape: frames x rows x columns.
    """
    check_model_payload(meta)
    geometry = latent_codec.read_geometry(section(sections, "latent"))
    frames, rows, columns, samples = meta.shape
    info = context.model.info
    if (geometry.frames, *geometry.original_size) != (frames, rows, columns):
        raise PayloadFormatError(
            f"latent declares {geometry.frames} frames of {geometry.original_size[0]} x {geometry.original_size[1]}, "
            f"the payload {frames} of {rows} x {columns}"
        )
    if (geometry.factor, geometry.channels, samples) != (info.factor, info.latent_channels, info.channels):
        raise PayloadFormatError(
            f"latent has {geometry.channels} channels at factor {geometry.factor} for {samples}-sample pixels; model "
            f"{info.model_id} needs {info.latent_channels} at factor {info.factor} for {info.channels}-sample pixels"
        )
    work = frames * rows * columns
    if work > context.limits.max_model_pixels:
        raise PayloadFormatError(
            f"payload needs {work} pixels decoded by the model ({frames} frames of {rows} x {columns}), "
            f"the limit is {context.limits.max_model_pixels}"
        )


def normalisation_of(meta: PayloadMeta) -> normalise.Normalisation:
    """The normalisation a model-coded payload must carry."""
    if meta.normalisation is None:
        raise PayloadFormatError("payload: a model-coded payload without normalisation")
    return meta.normalisation
