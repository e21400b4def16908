"""The lossless residual: each frame coded exactly, against the predictor that costs least.

Two predictors per frame:

- ``"decoder"``: ``(original - prediction + 2**(b-1)) mod 2**b`` in the storage width ``b`` (8,
  16 or 32 bits). The modular form makes the inverse exact whatever the prediction is, even
  where it is far off (padding, clipping). The receiver adds the same prediction back, which is
  why the prediction must be bit-identical on both sides (see ``codec.fixed_point``).
- ``"none"``: the pixels themselves, as the ``standard`` mode stores them (signed samples as
  offset binary). JPEG-LS's causal predictor already removes most of what the decoder's
  prediction would, and the prediction's pixel-level errors break JPEG-LS's run mode in flat
  regions, so on real images this is usually the smaller one.

The encoder codes every frame both ways and keeps the shorter record. The choice is per frame,
not per image: it costs no more (both codings are made either way), it can only be smaller,
and the blob is already a list of per-frame records (``codec.lossless``), so a multi-frame
series whose frames differ (a flat frame next to a noisy one) gets the better coding for each.
The choices travel in the payload metadata (``residual_predictor``, one entry per frame).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dicomcrypt.codec import lossless
from dicomcrypt.errors import PayloadFormatError

DECODER = "decoder"
NONE = "none"
PREDICTORS = (NONE, DECODER)  # in order of preference on a tie: "none" needs no decoder run

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def encode(
    original: np.ndarray, prediction: np.ndarray | None, *, predictor: str | None = None
) -> tuple[bytes, list[str]]:
    """Code ``(F, H, W, C)`` frames exactly; returns the blob and the predictor used per frame.

    ``predictor`` forces one predictor for every frame (tests, measurements); ``None`` picks
    the smaller per frame. ``prediction`` may be ``None`` only when ``"none"`` is forced.
    """
    if predictor is not None and predictor not in PREDICTORS:
        raise ValueError(f"unknown residual predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}")
    candidates = PREDICTORS if predictor is None else (predictor,)
    if DECODER in candidates:
        if prediction is None or prediction.shape != original.shape:
            shape = None if prediction is None else prediction.shape
            raise ValueError(f"prediction shape {shape} != original shape {original.shape}")
    modulus, _ = _width(original.dtype)
    records: list[bytes] = []
    chosen: list[str] = []
    for index, frame in enumerate(original):
        coded = {}
        for name in candidates:
            if name == DECODER:
                assert prediction is not None  # checked above; narrows the type
                coded[name] = lossless.encode_record(_modular(frame, prediction[index], modulus))
            else:
                coded[name] = lossless.encode_record(lossless.to_unsigned(frame))
        best = min(candidates, key=lambda name: len(coded[name]))  # first wins a tie
        records.append(coded[best])
        chosen.append(best)
    return lossless.pack_records(records), chosen


def decode(
    blob: bytes, predictors: Sequence[str], prediction: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype | str
) -> np.ndarray:
    """Inverse of :func:`encode`; ``prediction`` is needed only if some frame used ``"decoder"``."""
    dtype = np.dtype(dtype)
    modulus, unsigned = _width(dtype)
    if len(predictors) != shape[0]:
        raise PayloadFormatError(f"residual: {len(predictors)} predictors for {shape[0]} frames")
    if DECODER in predictors and (prediction is None or prediction.shape != tuple(shape)):
        raise ValueError("residual: frames coded against the decoder need its prediction")
    stored = lossless.decode_frames(blob, shape, unsigned)
    out = np.empty(shape, dtype=dtype)
    for index, name in enumerate(predictors):
        if name == DECODER:
            assert prediction is not None  # checked above; narrows the type
            out[index] = _add_back(stored[index], prediction[index], modulus, dtype)
        elif name == NONE:
            out[index] = lossless.from_unsigned(stored[index], dtype)
        else:
            raise PayloadFormatError(f"residual: unknown predictor {name!r} for frame {index}")
    return out


def parse_predictors(value: object, frames: int) -> list[str]:
    """The metadata's ``residual_predictor`` checked: a list of known names, one per frame."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise PayloadFormatError(f"payload: residual_predictor must be a list of names, not {value!r}")
    unknown = sorted(set(value) - set(PREDICTORS))
    if unknown:
        raise PayloadFormatError(
            f"payload: unknown residual predictor {', '.join(map(repr, unknown))} "
            f"(this version knows {', '.join(map(repr, PREDICTORS))})"
        )
    if len(value) != frames:
        raise PayloadFormatError(f"payload: residual_predictor has {len(value)} entries, the image has {frames} frames")
    return list(value)


def encode_residual(original: np.ndarray, prediction: np.ndarray) -> bytes:
    """Every frame against the decoder (payload version 1's residual); kept for measurements."""
    return encode(original, prediction, predictor=DECODER)[0]


def decode_residual(blob: bytes, prediction: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """Inverse of :func:`encode_residual`: add the residual back to ``prediction``, exactly."""
    return decode(blob, [DECODER] * prediction.shape[0], prediction, prediction.shape, dtype)


def _modular(frame: np.ndarray, prediction: np.ndarray, modulus: int) -> np.ndarray:
    shifted = (frame.astype(np.int64) - prediction.astype(np.int64) + modulus // 2) % modulus
    return shifted.astype(_UNSIGNED[frame.dtype.itemsize])


def _add_back(stored: np.ndarray, prediction: np.ndarray, modulus: int, dtype: np.dtype) -> np.ndarray:
    total = (stored.astype(np.int64) - modulus // 2 + prediction.astype(np.int64)) % modulus
    # Reinterpret the low bits in the stored width: two's complement for signed data.
    return total.astype(_UNSIGNED[dtype.itemsize]).view(dtype)


def _width(dtype: np.dtype) -> tuple[int, type]:
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or dtype.itemsize not in _UNSIGNED:
        raise ValueError(f"residual coding needs 8, 16 or 32-bit integers, not {dtype}")
    return 1 << (8 * dtype.itemsize), _UNSIGNED[dtype.itemsize]
