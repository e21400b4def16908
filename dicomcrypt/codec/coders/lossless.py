"""The ``lossless`` mode (the default): the lossy latent plus a residual that makes it exact.

Sections: ``latent`` and ``padding`` as the lossy coder makes them, and ``residual``: each
frame coded against the decoder's prediction or as itself, whichever is smaller
(:mod:`dicomcrypt.codec.residual`), the choice recorded per frame in ``residual_predictor``.
The residual carries the detail, so the model may ask for a coarser, smaller latent
(``lossless_levels``). Restoring runs the decoder only if some frame needs its prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from dicomcrypt.codec import residual
from dicomcrypt.codec.coders import lossy, wavelet
from dicomcrypt.codec.coders.base import Coder, CodingContext, Packed
from dicomcrypt.envelope import Mode
from dicomcrypt.errors import PayloadFormatError
from dicomcrypt.payload import section

if TYPE_CHECKING:
    from dicomcrypt.dicom import PixelFormat
    from dicomcrypt.payload import PayloadMeta


class LosslessCoder(Coder):
    """Every pixel back, checked by the digest; usually no larger than the standard mode."""

    mode = Mode.LOSSLESS
    needs_model = True

    def pack(self, frames: np.ndarray, fmt: PixelFormat, context: CodingContext) -> Packed:
        model = context.model
        if wavelet.is_wavelet(model):
            return wavelet.pack_exact(frames, fmt, context)
        levels = model.lossless_levels if context.latent_format == "u8" else lossy.FULL_LEVELS
        sections, norm = lossy.encode_latent(frames, fmt, context, levels=levels)
        prediction = lossy.reconstruct(model, sections, norm, frames.shape, frames.dtype)
        sections["residual"], predictors = residual.encode(frames, prediction)
        context.metrics["residual_bytes"] = float(len(sections["residual"]))
        context.metrics["predictor_none_frames"] = float(predictors.count(residual.NONE))
        return Packed(sections, {"normalisation": norm, "residual_predictor": tuple(predictors)})

    def unpack(self, sections: Mapping[str, bytes], meta: PayloadMeta, context: CodingContext) -> np.ndarray:
        """Exact pixels; the decoder runs only if some frame was coded against its prediction.

        When every frame is stored as itself the prediction is not needed, so the (slow)
        decoder is skipped. The pipeline has already checked the model named in the envelope,
        and the digest check that follows is the same either way.
        """
        lossy.check_model_payload(meta)
        if lossy.wavelet_payload(meta, context):
            return wavelet.unpack_exact(sections, meta, context)
        norm = lossy.normalisation_of(meta)
        predictors = predictors_of(meta)
        if residual.DECODER in predictors:
            lossy.check_latent(sections, meta, context)
            prediction = lossy.reconstruct(context.model, sections, norm, meta.shape, meta.dtype)
        else:
            section(sections, "latent")  # still part of a well-formed lossless payload
            prediction = None
        return residual.decode(section(sections, "residual"), predictors, prediction, meta.shape, meta.dtype)


def predictors_of(meta: PayloadMeta) -> list[str]:
    """Version 1 coded every frame against the decoder; version 2 names the predictor per frame."""
    frames = meta.shape[0]
    if meta.payload_version == 1:
        return [residual.DECODER] * frames
    if meta.residual_predictor is None:
        raise PayloadFormatError("payload: lossless payload without residual_predictor")
    return residual.parse_predictors(list(meta.residual_predictor), frames)
