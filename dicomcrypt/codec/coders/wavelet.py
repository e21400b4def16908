"""The wavelet codec inside the ``lossless`` and ``lossy`` modes (payload version 3, ``codec: wavelet``).

When the model is a wavelet codec model (:mod:`dicomcrypt.codec.wavelet.model`; the default),
the lossless and lossy coders hand their frames here. Sections:

- ``pixels``: one record per frame (``u32`` count; per frame ``u8`` coding, ``u32`` length,
  data), the layout of :mod:`dicomcrypt.codec.lossless` with two more codings: 1 JPEG-LS and
  2 zstd (as there), 3 wavelet stream, 4 JPEG-XL, 5 wavelet streams of tiles (frames above
  4 megapixels, :mod:`dicomcrypt.codec.wavelet.tiles`: memory bounded by the tile). Exact mode
  codes each frame with the codings the effort asks for (:data:`EXACT_EFFORTS`) among those
  the model lists, JPEG-LS always, and keeps the smallest record, so it is never larger than
  the ``standard`` mode's JPEG-LS blob, byte for byte; the coding byte records the choice, so
  the decoder needs no effort setting. Lossy mode writes wavelet streams only.
- ``padding`` (lossy, when the image has padding): the padding mask, as the autoencoder's lossy
  mode writes it, so the padding value comes back exactly; the padded pixels are coded as the
  frame's lowest value (a flat region costs nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dicomcrypt.codec import lossless, normalise
from dicomcrypt.codec.coders.base import CodingContext, Packed
from dicomcrypt.codec.wavelet import stream, tiles
from dicomcrypt.codec.wavelet.model import WaveletModel, quantiser_for
from dicomcrypt.errors import InvalidInputError, PayloadFormatError
from dicomcrypt.payload import section

if TYPE_CHECKING:
    from dicomcrypt.dicom import PixelFormat
    from dicomcrypt.payload import PayloadMeta

CODEC = "wavelet"
LOSSY_METHOD = "DICOMCRYPT_WV1"  # Lossy Image Compression Method (0028,2114), CS <= 16 chars
JPEG_LS = lossless.JPEG_LS  # codec.lossless records keep their codec byte
ZSTD = lossless.ZSTD
WAVELET = 3
JPEG_XL = 4
WAVELET_TILES = 5
CODING_NAMES = {JPEG_LS: "jpeg-ls", ZSTD: "zstd", WAVELET: "wavelet", JPEG_XL: "jpeg-xl", WAVELET_TILES: "wavelet"}


@dataclass(frozen=True)
class ExactEffort:
    """What one exact-mode effort tries per frame besides JPEG-LS (always tried)."""

    wavelet: bool  # the wavelet stream at step 1
    jpeg_xl: tuple[int, ...]  # libjxl lossless efforts (1..9) tried


EXACT_EFFORTS = {
    # Measured on the held-out CT, MR, CR and US images (docs/codec.md, "Exact-mode effort"):
    # JPEG-XL effort 1 costs a few ms and wins big on colour (US 59 % below JPEG-LS); effort 3
    # is 9 % below JPEG-LS on a CT within the 50 ms budget of a 512x512 slice; the wavelet
    # stream and effort 7 win 1-13 % more for 8-12 times the encode time. Each effort tries
    # everything the one before it tries (effort 7 is not always below effort 3), so a higher
    # effort is never larger.
    "fast": ExactEffort(wavelet=False, jpeg_xl=(1,)),
    "balanced": ExactEffort(wavelet=False, jpeg_xl=(1, 3)),
    "smallest": ExactEffort(wavelet=True, jpeg_xl=(1, 3, 7)),
}
DEFAULT_EFFORT = "balanced"


def is_wavelet(model: object) -> bool:
    return isinstance(model, WaveletModel)


def pack_exact(frames: np.ndarray, fmt: PixelFormat, context: CodingContext) -> Packed:
    """Each frame as the smallest of the exact codings that the effort tries and the model lists."""
    model: WaveletModel = context.model
    effort = EXACT_EFFORTS[context.effort or DEFAULT_EFFORT]
    codings = model.params.exact_codings

    def exact_stream(pixels: np.ndarray) -> bytes:
        return stream.encode(pixels, colour=_colour(fmt), lossless=True, tables=model.params.tables)

    records = []
    for frame in frames:
        candidates = []  # whole records; the first byte is the coding
        stored = lossless.to_unsigned(frame)
        if "jpeg-ls" in codings:
            candidates.append(lossless.encode_record(stored))
        if effort.wavelet and "wavelet" in codings:
            candidates.append(lossless.record(*_wavelet_record(frame.shape, frame.__getitem__, exact_stream)))
        for jpeg_xl_effort in effort.jpeg_xl if "jpeg-xl" in codings else ():
            coded = _encode_jpeg_xl(stored, jpeg_xl_effort)
            if coded is not None:
                candidates.append(lossless.record(JPEG_XL, coded))
        record = min(candidates, key=len)  # the first of equal sizes: JPEG-LS
        records.append(record)
        name = CODING_NAMES[record[0]]
        context.metrics[f"{name}_frames"] = context.metrics.get(f"{name}_frames", 0.0) + 1
    blob = lossless.pack_records(records)
    context.metrics["pixels_bytes"] = float(len(blob))
    return Packed({"pixels": blob}, {"codec": CODEC})


def unpack_exact(sections: Mapping[str, bytes], meta: PayloadMeta, context: CodingContext) -> np.ndarray:
    out = np.empty(meta.shape, dtype=meta.dtype)
    for index, (coding, data) in enumerate(lossless.split_records(section(sections, "pixels"), meta.shape[0])):
        shape = meta.shape[1:]
        if coding in (WAVELET, WAVELET_TILES):
            for rect, values, lossy in _wavelet_parts(coding, data, shape, context.model.params.tables):
                if lossy:
                    raise PayloadFormatError(f"payload: frame {index} of an exact payload is a lossy wavelet stream")
                _check_range(values, meta.dtype, index)
                out[index][rect] = values
        elif coding in (JPEG_LS, ZSTD):
            frame = lossless.decode_record(coding, data, shape, lossless.stored_dtype(meta.dtype))
            out[index] = lossless.from_unsigned(frame, meta.dtype)
        elif coding == JPEG_XL:
            out[index] = _decode_jpeg_xl(data, shape, meta.dtype)
        else:
            raise PayloadFormatError(f"payload: frame {index} has unknown coding {coding}")
    return out


def pack_lossy(frames: np.ndarray, fmt: PixelFormat, context: CodingContext) -> Packed:
    """Every frame as a quantised wavelet stream at the context's quality."""
    model: WaveletModel = context.model
    norm = normalise.fit(frames, fmt.padding_value)
    mask = normalise.padding_mask(frames, norm)
    sections: dict[str, bytes] = {}
    if mask is not None:
        sections["padding"] = normalise.encode_mask(mask)
    records = []
    # A PSNR target is over the whole image's range (quality.compare's convention): each frame
    # within its share of that MSE keeps the image within it.
    target_mse = None if context.psnr is None else _mse_for_psnr(context.psnr, frames)
    for index, frame in enumerate(frames):
        frame_mask = None if mask is None else mask[index]
        value_range = norm.high[index] - norm.low[index]
        coded = _LossyFrame(model, fmt, frame, frame_mask, int(norm.low[index]))
        if target_mse is None:
            record = coded.record(model.params.pixel_step(context.quality, value_range))
        else:
            record = _encode_reaching(coded, value_range=value_range, target_mse=target_mse, index=index)
        records.append(lossless.record(*record))
    sections["pixels"] = lossless.pack_records(records)
    context.metrics["pixels_bytes"] = float(len(sections["pixels"]))
    return Packed(sections, {"codec": CODEC, "normalisation": norm})


PSNR_TRIALS = 8  # encodes (each decoded) a PSNR target may take per frame
PSNR_TOLERANCE_DB = 0.1  # a trial reaching the target by less than this ends the search
DB_PER_OCTAVE = 6.02  # a step twice as large costs about 6 dB: the first guess's slope


class _LossyFrame:
    """One frame of a lossy payload: its records at a step, and their error as the receiver sees it.

    Pixels are taken (as int64, padding replaced by the frame's low value) one tile at a time, so
    a large frame never has a whole-frame int64 copy (:mod:`dicomcrypt.codec.wavelet.tiles`).
    """

    def __init__(self, model: WaveletModel, fmt: PixelFormat, frame: np.ndarray, mask: np.ndarray | None,
                 low: int) -> None:
        self.model, self.fmt, self.frame, self.mask, self.low = model, fmt, frame, mask, low
        self.clip = fmt.stored_range

    def pixels(self, rect: tuple[slice, slice]) -> np.ndarray:
        pixels = self.frame[rect].astype(np.int64)
        return pixels if self.mask is None else np.where(self.mask[rect], self.low, pixels)

    def record(self, step: float) -> tuple[int, bytes]:
        """(coding, data) of the frame at a pixel step: one stream, or tiles of a large frame."""
        colour = _colour(self.fmt)

        def encode(pixels: np.ndarray) -> bytes:
            quantiser = quantiser_for(self.model.params, pixels, step, colour)
            return stream.encode(pixels, colour=colour, lossless=False, quantiser=quantiser,
                                 tables=self.model.params.tables)

        return _wavelet_record(self.frame.shape, self.pixels, encode)

    def mse(self, record: tuple[int, bytes]) -> float:
        """Mean squared error of the decoded record (clipped; padding, restored exactly, not counted)."""
        low, high = self.clip
        total = 0.0
        for rect, values, _lossy in _wavelet_parts(*record, self.frame.shape, self.model.params.tables):
            error = (np.clip(values, low, high) - self.pixels(rect)).astype(np.float64) ** 2
            total += float(error.sum() if self.mask is None else error[~self.mask[rect]].sum())
        return total / max(self.frame.size, 1)


def _wavelet_record(shape: tuple[int, ...], pixels_of: Callable[[tuple[slice, slice]], np.ndarray],
                    encode: Callable[[np.ndarray], bytes]) -> tuple[int, bytes]:
    """One wavelet stream of the frame, or (above the tiling threshold) a stream per tile."""
    height, width = shape[:2]
    if not tiles.is_tiled(height, width):
        return WAVELET, encode(pixels_of((slice(0, height), slice(0, width))))
    return WAVELET_TILES, tiles.pack(height, width, lambda rect: encode(pixels_of(rect)))


def _wavelet_parts(coding: int, data: bytes, shape: tuple[int, ...],
                   tables: dict[int, np.ndarray]) -> Iterator[tuple[tuple[slice, slice], np.ndarray, bool]]:
    """(rectangle, decoded int64 values, lossy) of a wavelet record, one tile at a time."""
    height, width, planes = shape
    parts = ((((slice(0, height), slice(0, width))), data),) if coding == WAVELET else tiles.unpack(data, height, width)
    for rect, part in parts:
        rows, columns = rect
        values, lossy = stream.decode(part, (rows.stop - rows.start, columns.stop - columns.start, planes), tables)
        yield rect, values, lossy


def _mse_for_psnr(psnr: float, frames: np.ndarray) -> float:
    value_range = float(frames.max() - frames.min()) if frames.size else 0.0
    return (value_range or 1.0) ** 2 / 10 ** (psnr / 10)


def _encode_reaching(frame: _LossyFrame, *, value_range: int, target_mse: float, index: int) -> tuple[int, bytes]:
    """The record of (nearly) the largest step whose decoded frame is within ``target_mse``.

    Each trial is decoded as the receiver will (:meth:`_LossyFrame.mse`), so the PSNR reached is
    measured, not estimated. The step's logarithm is searched by secant steps (kept inside the
    bracket once one trial reached the target and one missed it) between the steps of qualities
    100 and 1, starting from the default quality with the codec's ~6 dB per octave: two to four
    trials usually, at most :data:`PSNR_TRIALS`, plus one at quality 100 when none reached the
    target. Raises :class:`InvalidInputError` when even quality 100 misses it (the lossless mode
    is the answer).
    """
    params = frame.model.params

    def margin_db(log_step: float) -> tuple[tuple[int, bytes], float]:
        record = frame.record(2.0**log_step)
        mse = frame.mse(record)
        return record, 10 * np.log10(target_mse / mse) if mse > 0 else np.inf

    finest, coarsest = (float(np.log2(params.pixel_step(q, value_range))) for q in (100, 1))
    best: tuple[int, bytes] | None = None
    reached: tuple[float, float] | None = None  # (log step, margin >= 0)
    missed: tuple[float, float] | None = None  # (log step, margin < 0)
    slope = DB_PER_OCTAVE  # dB lost per octave of step, re-measured from the last two trials
    previous: tuple[float, float] | None = None
    x = float(np.log2(params.pixel_step(None, value_range)))
    for _ in range(PSNR_TRIALS):
        record, margin = margin_db(x)
        if margin >= 0:
            best, reached = record, (x, margin)
            if margin < PSNR_TOLERANCE_DB or x >= coarsest:
                return best
        else:
            missed = (x, margin)
            if x <= finest:
                break
        if previous is not None and x != previous[0] and np.isfinite(margin) and np.isfinite(previous[1]):
            slope = float(np.clip((previous[1] - margin) / (x - previous[0]), 1.0, 12.0))
        previous = (x, margin)
        aim = margin - PSNR_TOLERANCE_DB / 2  # land just above the target, not on it
        x = min(max(x + aim / slope, finest), coarsest)
        if reached and missed:  # stay strictly inside the bracket
            low_x, high_x = reached[0], missed[0]
            x = min(max(x, low_x + 0.05 * (high_x - low_x)), high_x - 0.05 * (high_x - low_x))
    if best is not None:
        return best
    record, margin = margin_db(finest)
    if margin < 0:
        raise InvalidInputError(
            f"frame {index}: the lossy codec does not reach the PSNR target even at quality 100; use the lossless mode"
        )
    return record


def unpack_lossy(sections: Mapping[str, bytes], meta: PayloadMeta, context: CodingContext) -> np.ndarray:
    out = np.empty(meta.shape, dtype=meta.dtype)
    low, high = meta.pixel_format.stored_range
    for index, (coding, data) in enumerate(lossless.split_records(section(sections, "pixels"), meta.shape[0])):
        if coding not in (WAVELET, WAVELET_TILES):
            raise PayloadFormatError(f"payload: frame {index} of a lossy payload has coding {coding}, not wavelet")
        for rect, values, _lossy in _wavelet_parts(coding, data, meta.shape[1:], context.model.params.tables):
            out[index][rect] = np.clip(values, low, high)
    if "padding" in sections:
        padding = None if meta.normalisation is None else meta.normalisation.padding
        if padding is None:
            raise PayloadFormatError("payload: a padding mask without a padding value")
        out[normalise.decode_mask(sections["padding"], out.shape)] = padding
    return out


def _colour(fmt: PixelFormat) -> bool:
    """The reversible colour transform for RGB; YBR data is decorrelated already."""
    return fmt.samples_per_pixel == 3 and not fmt.photometric_interpretation.startswith("YBR")


def _check_range(values: np.ndarray, dtype: np.dtype, index: int) -> None:
    info = np.iinfo(dtype)
    if values.size and (int(values.min()) < info.min or int(values.max()) > info.max):
        raise PayloadFormatError(f"payload: frame {index} decodes to values outside {dtype.str}")


def _encode_jpeg_xl(stored: np.ndarray, effort: int) -> bytes | None:
    """JPEG-XL lossless at a libjxl effort, of 8/16-bit frames with 1 or 3 samples; None when it cannot.
    ``stored`` is the frame as :func:`lossless.to_unsigned` gives it. One thread: the sealing
    workers already use every core (libjxl's bytes are the same with any thread count)."""
    import imagecodecs

    if stored.dtype not in (np.uint8, np.uint16) or min(stored.shape[:2]) < 1:
        return None
    image = stored[..., 0] if stored.shape[-1] == 1 else stored
    try:
        return bytes(imagecodecs.jpegxl_encode(image, lossless=True, effort=effort, numthreads=1))
    except Exception:  # libjxl refuses some inputs; the other codings remain
        return None


def _decode_jpeg_xl(data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Decoded into a buffer of the payload's frame shape: libjxl checks the declared size
    against it before decoding, so a hostile header cannot make it allocate more."""
    import imagecodecs

    stored = lossless.stored_dtype(dtype)
    if stored not in (np.uint8, np.uint16):
        raise PayloadFormatError(f"payload: a JPEG-XL frame for {dtype.str} pixels")
    out = np.empty(shape[:2] if shape[2] == 1 else shape, dtype=stored)
    try:
        imagecodecs.jpegxl_decode(data, out=out, numthreads=1)
    except Exception as exc:  # imagecodecs raises ValueError/RuntimeError with libjxl's text
        raise PayloadFormatError(f"payload: JPEG-XL frame does not decode ({exc})") from exc
    return lossless.from_unsigned(out.reshape(shape), dtype)
