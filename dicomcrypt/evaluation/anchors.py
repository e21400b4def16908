"""The codecs a user would pick instead of ours, on the same pixels: the anchors of the RD report.

JPEG 2000 (OpenJPEG), HTJ2K (OpenJPH), JPEG-XL (libjxl) and JPEG-LS (CharLS, near-lossless and
lossless), all through imagecodecs. Every figure comes from a real stream decoded back: a
codec's nominal setting (OpenJPEG's PSNR target, libjxl's distance) is only where the search
starts, never the answer.

Pixels are ``(F, H, W, C)`` stored integers, as :func:`dicomcrypt.dicom.read_frames` gives them;
each frame is its own stream and sizes add up. Grey data is shifted by the image's minimum and
coded at the bit depth its range needs (signed CT becomes unsigned, a 12-bit MR is coded as 12
bits): a lossless change every codec gets alike, and what a careful user of each codec would do.
Colour must be 8-bit (three samples, coded with each codec's colour transform where it has one).

"Smallest stream reaching PSNR X" searches each codec's one quality setting by bisection on a
monotone scale (OpenJPEG's PSNR target in dB, log2 of HTJ2K's quantisation step and of JPEG-XL's
distance, JPEG-LS's integer NEAR), keeping the smallest stream seen whose decoded PSNR over the
image's own range (:func:`dicomcrypt.quality.psnr_db`) reaches X. numpy and imagecodecs only, so
:mod:`dicomcrypt.roundtrip` may use it for the demo's report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dicomcrypt import quality
from dicomcrypt.errors import UnsupportedImageError

JPEG2000 = "JPEG 2000"
HTJ2K = "HTJ2K"
JPEGXL = "JPEG-XL"
JPEGLS_NEAR = "JPEG-LS near-lossless"

JPEGXL_EFFORT = 7  # libjxl's default; the lossless target names it
SEARCH_STEPS = 14  # at most; the search stops once the setting is pinned to the codec's tolerance


@dataclass(frozen=True)
class Pixels:
    """Frames as the anchor codecs take them: each frame 2-D (grey) or H x W x 3 (colour)."""

    frames: tuple[np.ndarray, ...]  # uint8 or uint16, offset by ``offset``
    offset: int
    bits: int  # bit depth the shifted values need (8 for colour)
    original: np.ndarray  # (F, H, W, C) as given
    value_range: float  # max - min of the original, the PSNR peak

    @property
    def pixel_count(self) -> int:
        """Pixels (not samples) of every frame: the denominator of bits per pixel."""
        return int(np.prod(self.original.shape[:3]))

    def restore(self, decoded: list[np.ndarray]) -> np.ndarray:
        """Decoded frames back to the original's shape and dtype."""
        stacked = np.stack([d.reshape(self.original.shape[1:]) for d in decoded]).astype(np.int64) + self.offset
        return stacked.astype(self.original.dtype)


def prepare(frames: np.ndarray) -> Pixels:
    """Shift and narrow ``(F, H, W, C)`` stored integers for the anchors; refuses what they cannot code."""
    if frames.ndim != 4 or frames.shape[3] not in (1, 3) or frames.dtype.kind not in "ui":
        raise UnsupportedImageError(
            f"the anchor codecs take integer frames (F, H, W, 1 or 3), not {frames.dtype} {frames.shape}"
        )
    low, high = int(frames.min()), int(frames.max())
    if frames.shape[3] == 3:
        if frames.dtype != np.uint8:
            raise UnsupportedImageError(f"the anchor codecs take 8-bit colour, not {frames.dtype}")
        coded = tuple(np.ascontiguousarray(f) for f in frames)
        return Pixels(coded, 0, 8, frames, float(high - low) or 1.0)
    span = high - low
    if span >= 1 << 16:
        raise UnsupportedImageError(f"the anchor codecs take up to 16 bits; this image spans {span + 1} values")
    bits = max(1, span.bit_length())
    narrow = np.uint8 if bits <= 8 else np.uint16
    coded = tuple(np.ascontiguousarray((f[..., 0].astype(np.int64) - low).astype(narrow)) for f in frames)
    return Pixels(coded, low, max(bits, 8) if narrow is np.uint8 else bits, frames, float(span) or 1.0)


@dataclass(frozen=True)
class Codec:
    """One anchor: how a setting becomes a stream and back.

    ``scale`` maps the search variable ``t`` (higher = better quality) to the codec's setting;
    ``search`` is the interval of ``t`` searched, ``integer`` when ``t`` takes whole values only.
    """

    name: str
    encode: Callable[[np.ndarray, int, float | None], bytes]  # (frame, bits, t or None=lossless)
    decode: Callable[[bytes, int], np.ndarray]  # (stream, bits)
    lossless: bool  # can code exactly (t=None)
    lossy: bool
    search: tuple[float, float] = (0.0, 0.0)
    tolerance: float = 0.01  # search width worth no more encodes (0.01 in log2 = 0.7 % of a step)
    integer: bool = False
    describe: Callable[[float], str] = str
    grid: Callable[[Pixels], list[float]] = lambda pixels: []  # values of t drawn as an RD curve


def _imagecodecs() -> object:
    import imagecodecs

    return imagecodecs


def _j2k_encode(frame: np.ndarray, bits: int, t: float | None) -> bytes:
    ic = _imagecodecs()
    extra = {"bitspersample": bits} if frame.dtype == np.uint16 else {}
    if t is None:
        return bytes(ic.jpeg2k_encode(frame, reversible=True, **extra))  # type: ignore[attr-defined]
    return bytes(ic.jpeg2k_encode(frame, level=float(t), reversible=False, **extra))  # type: ignore[attr-defined]


def _htj2k_encode(frame: np.ndarray, bits: int, t: float | None) -> bytes:
    """imagecodecs' HTJ2K has no bit-depth option: lossy streams go in a 16-bit container (the
    8-bit one wraps overshoot around: 255 + 1 decodes as 0), the step relative to its 2^16 peak."""
    ic = _imagecodecs()
    if t is None:
        return bytes(ic.htj2k_encode(frame))  # type: ignore[attr-defined]
    wide = frame.astype(np.uint16)
    return bytes(ic.htj2k_encode(wide, level=2.0 ** -t, reversible=False))  # type: ignore[attr-defined]


def _htj2k_decode(stream: bytes, bits: int) -> np.ndarray:
    """Decode, then clip to the image's bit depth as a decoder that knew it would (undershoot below
    zero comes back wrapped to the top of the 16-bit container)."""
    decoded = np.asarray(_imagecodecs().htj2k_decode(stream)).astype(np.int64)  # type: ignore[attr-defined]
    decoded[decoded >= 1 << 15] -= 1 << 16
    return np.clip(decoded, 0, (1 << bits) - 1)


def _jxl_encode(frame: np.ndarray, bits: int, t: float | None) -> bytes:
    ic = _imagecodecs()
    extra = {"bitspersample": bits} if frame.dtype == np.uint16 else {}
    if t is None:
        return bytes(ic.jpegxl_encode(frame, lossless=True, effort=JPEGXL_EFFORT, **extra))  # type: ignore[attr-defined]
    return bytes(ic.jpegxl_encode(frame, distance=2.0 ** -t, effort=JPEGXL_EFFORT, **extra))  # type: ignore[attr-defined]


def _jls_encode(frame: np.ndarray, bits: int, t: float | None) -> bytes:
    ic = _imagecodecs()
    return bytes(ic.jpegls_encode(frame, level=0 if t is None else int(-t)))  # type: ignore[attr-defined]


def _decoder(name: str) -> Callable[[bytes, int], np.ndarray]:
    def decode(stream: bytes, bits: int) -> np.ndarray:
        return np.asarray(getattr(_imagecodecs(), name)(stream))

    return decode


def _j2k_grid(pixels: Pixels) -> list[float]:
    """OpenJPEG targets landing near 25, 30, ... 75 dB over the image's range."""
    return [_j2k_nominal(pixels, float(db)) for db in range(25, 80, 5)]


def _j2k_nominal(pixels: Pixels, target_db: float) -> float:
    """OpenJPEG's PSNR target is on the bit-depth peak: the setting that should land on ``target_db``
    over the image's range (the search starts there)."""
    return target_db + 20.0 * math.log10(((1 << pixels.bits) - 1) / pixels.value_range)


def _htj2k_grid(pixels: Pixels) -> list[float]:
    """Steps of 2^-3 .. 2^-13 of the image's range (about 25 to 85 dB), relative to the 16-bit container."""
    return [k + math.log2(65535.0 / pixels.value_range) for k in range(3, 14)]


def _jxl_grid(pixels: Pixels) -> list[float]:
    """Distances 25, 12.5, ... 0.05 (libjxl's 1.0 is "visually lossless")."""
    return [-math.log2(25.0 / 2**i) for i in range(10)]


def _jls_grid(pixels: Pixels) -> list[float]:
    """NEAR 1 .. 128, as far as the sample range allows."""
    most = min(255, ((1 << pixels.bits) - 1) // 2)
    return [-float(n) for n in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128) if n <= most]


CODECS: dict[str, Codec] = {
    JPEG2000: Codec(JPEG2000, _j2k_encode, _decoder("jpeg2k_decode"), True, True, (0.0, 140.0), tolerance=0.02,
                    describe=lambda t: f"OpenJPEG PSNR target {t:.2f} dB", grid=_j2k_grid),
    HTJ2K: Codec(HTJ2K, _htj2k_encode, _htj2k_decode, True, True, (0.0, 24.0),
                 describe=lambda t: f"qstep {2.0 ** -t:.3g}", grid=_htj2k_grid),
    JPEGXL: Codec(JPEGXL, _jxl_encode, _decoder("jpegxl_decode"), True, True, (-math.log2(25.0), math.log2(100.0)),
                  describe=lambda t: f"distance {2.0 ** -t:.3g}, effort {JPEGXL_EFFORT}", grid=_jxl_grid),
    JPEGLS_NEAR: Codec(JPEGLS_NEAR, _jls_encode, _decoder("jpegls_decode"), True, True, (-255.0, 0.0),
                       integer=True, describe=lambda t: f"NEAR {int(-t)}", grid=_jls_grid),
}
"""The anchors, by name. JPEG-LS lossless is ``JPEGLS_NEAR`` at NEAR 0 (``lossless(..., JPEGLS_NEAR)``)."""

LOSSY_ANCHORS = (JPEG2000, HTJ2K, JPEGXL, JPEGLS_NEAR)


@dataclass(frozen=True)
class AnchorPoint:
    """One real stream set (every frame) of one codec, decoded and measured."""

    codec: str
    setting: str
    nbytes: int
    psnr_db: float  # over the original's own range; inf when exact
    exact: bool
    decoded: np.ndarray  # (F, H, W, C) as the original

    def bpp(self, pixels: Pixels) -> float:
        """Bits per pixel (all samples of a pixel together)."""
        return 8.0 * self.nbytes / pixels.pixel_count


def code(pixels: Pixels, codec_name: str, t: float | None) -> AnchorPoint:
    """Encode every frame with ``codec_name`` at search value ``t`` (None: lossless), decode, measure."""
    codec = CODECS[codec_name]
    try:
        streams = [codec.encode(frame, pixels.bits, t) for frame in pixels.frames]
        decoded = pixels.restore([codec.decode(s, pixels.bits) for s in streams])
    except (RuntimeError, ValueError) as exc:  # imagecodecs' per-codec errors are RuntimeErrors
        raise UnsupportedImageError(f"{codec_name} could not code this image: {exc}") from exc
    mse = float(np.mean((pixels.original.astype(np.float64) - decoded) ** 2))
    exact = bool(np.array_equal(decoded, pixels.original))
    setting = "lossless" if t is None else codec.describe(t)
    return AnchorPoint(codec_name, setting, sum(len(s) for s in streams),
                       math.inf if exact else quality.psnr_db(mse, pixels.value_range), exact, decoded)


def lossless(pixels: Pixels, codec_name: str) -> AnchorPoint:
    """The codec's exact stream; raises :class:`UnsupportedImageError` if it did not decode exactly."""
    point = code(pixels, codec_name, None)
    if not point.exact:
        raise UnsupportedImageError(f"{codec_name} lossless did not restore every pixel of this image")
    return point


def smallest_reaching(pixels: Pixels, codec_name: str, target_db: float) -> AnchorPoint:
    """The smallest stream of ``codec_name`` whose decoded PSNR over the range is at least ``target_db``.

    Bisection over the codec's setting; every stream tried is decoded and measured, and the smallest
    that reaches the target wins (so a codec whose size or PSNR is not quite monotone in its
    setting is still judged on streams it really produced). The codec's lossless stream reaches
    every target, so it is a candidate too (it wins on flat synthetic images and at very high PSNR).
    """
    codec = CODECS[codec_name]
    low, high = codec.search
    if codec.integer:  # JPEG-LS: NEAR at most half the sample range
        low = max(low, -float(min(255, ((1 << pixels.bits) - 1) // 2)))
    tried: dict[float, AnchorPoint] = {}

    def at(t: float) -> AnchorPoint:
        if t not in tried:
            tried[t] = code(pixels, codec_name, t)
        return tried[t]

    low, high = _bracket(lambda t: at(t).psnr_db >= target_db, low, high,
                         _nominal_start(codec_name, pixels, target_db))
    if at(high).psnr_db >= target_db and not at(low).psnr_db >= target_db:
        for _ in range(SEARCH_STEPS):
            if high - low <= (1 if codec.integer else codec.tolerance):
                break
            middle = math.floor((low + high) / 2) if codec.integer else (low + high) / 2
            if at(middle).psnr_db >= target_db:
                high = middle
            else:
                low = middle
    reaching = [p for p in tried.values() if p.psnr_db >= target_db] + [lossless(pixels, codec_name)]
    return min(reaching, key=lambda p: p.nbytes)


def _bracket(reaches: Callable[[float], bool], low: float, high: float, start: float | None) -> tuple[float, float]:
    """Narrow the search to 4 units either side of the nominal setting when it has one."""
    if start is None or not low < start < high:
        return low, high
    if reaches(start):
        probe = max(low, start - 4.0)
        return (probe if not reaches(probe) else low), start
    probe = min(high, start + 4.0)
    return start, (probe if reaches(probe) else high)


def _nominal_start(codec_name: str, pixels: Pixels, target_db: float) -> float | None:
    """Where the codec's own setting should land, when it has one in dB: saves most of the search."""
    return _j2k_nominal(pixels, target_db) if codec_name == JPEG2000 else None


def curve(pixels: Pixels, codec_name: str) -> list[AnchorPoint]:
    """An RD curve: one real stream per value of the codec's grid, smallest first (the lossy part of
    the range; no search, so a curve costs about ten encodes)."""
    codec = CODECS[codec_name]
    points = [code(pixels, codec_name, t) for t in codec.grid(pixels)]
    return sorted((p for p in points if not p.exact), key=lambda p: p.nbytes)
