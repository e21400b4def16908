"""Rate-distortion report: our codec, the paper's network and the anchor codecs on the same pixels.

Per image: RD points (bits per pixel against PSNR over the image's own range and SSIM) for every
lossy setting of our codec (:func:`our_points`), for each anchor of :mod:`.anchors`, a BD-rate table
against JPEG 2000, and a PNG plot. Sizes are what travels: our payload as the pipeline seals it
(metadata included), each anchor's streams. Bits per pixel count a colour pixel's three samples
together.

BD-rate (Bjontegaard, VCEG-M33) as the usual tools compute it today: log10 of the rate as a
function of PSNR, interpolated piecewise cubic (PCHIP, monotone, no overshoot) through each
curve's points, integrated over the PSNR interval both curves cover within the stated range
(35-55 dB by default); the result is the average rate difference in percent (negative = fewer bits
than the reference for the same PSNR). No BD-rate is given when the curves share less than 0.5 dB.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dicomcrypt import dicom, quality
from dicomcrypt.crypto import Key
from dicomcrypt.errors import UnsupportedImageError
from dicomcrypt.evaluation import anchors

BD_RANGE_DB = (35.0, 55.0)
MIN_OVERLAP_DB = 0.5
REFERENCE = anchors.JPEG2000
OURS = "ours"
"""Curve name of the new codec's quality levels (:data:`OUR_QUALITIES`)."""

OUR_QUALITIES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
"""The wavelet codec's quality knob (1..100, default 60) at which :func:`our_points` measures it:
from about 35 dB to past 60 dB on CT, MR and radiographs, the span the BD-rate integrates."""

PAPER_MODELS = {1: "paper-grey@1", 3: "paper-colour@1"}
"""The paper's network (Alslman et al. 2022, Table 2), drawn as its own curve."""


@dataclass(frozen=True)
class RDPoint:
    """One coded version of an image, measured on its decoded pixels."""

    curve: str  # "ps-grey@2", "ours", "JPEG 2000", ...
    setting: str  # "latent u8", "quality 50", "distance 0.37, effort 7", ...
    nbytes: int
    bpp: float
    psnr_db: float  # over the original's own range
    ssim: float
    window_max_hu: float | None = None  # CT: largest error in HU where the original is in C40/W100
    window_mae_hu: float | None = None  # CT: mean absolute error there (what ``evaluate`` reports)


@dataclass
class ImageRD:
    """Every RD point of one image, and the BD-rates against :data:`REFERENCE`."""

    file: str
    modality: str
    geometry: str  # columns x rows x frames x samples
    pixels: int
    points: list[RDPoint] = field(default_factory=list)
    bd_rate: dict[str, float | None] = field(default_factory=dict)  # curve -> % against REFERENCE

    def curves(self) -> dict[str, list[RDPoint]]:
        """Points by curve, smallest first."""
        grouped: dict[str, list[RDPoint]] = {}
        for point in sorted(self.points, key=lambda p: p.nbytes):
            grouped.setdefault(point.curve, []).append(point)
        return grouped

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["points"] = [{k: _finite(v) for k, v in asdict(p).items()} for p in self.points]
        return data


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def window_max_hu(original: np.ndarray, restored: np.ndarray, rescale: tuple[float, float] | None) -> float | None:
    """Largest absolute error in HU over pixels whose original lies in the brain window (C40/W100)."""
    if rescale is None:
        return None
    slope, intercept = rescale
    hu = original.astype(np.float64) * slope + intercept
    low, high = quality.BRAIN_WINDOW_HU
    inside = (hu >= low) & (hu <= high)
    if not inside.any():
        return None
    return float(np.max(np.abs(original[inside].astype(np.float64) - restored[inside]) * abs(slope)))


def measure(curve: str, setting: str, nbytes: int, original: np.ndarray, restored: np.ndarray, *,
            rescale: tuple[float, float] | None) -> RDPoint:
    """An :class:`RDPoint` from ``(F, H, W, C)`` original and decoded pixels."""
    q = quality.compare(original, restored, rescale=rescale)
    pixels = int(np.prod(original.shape[:3]))
    return RDPoint(curve, setting, nbytes, 8.0 * nbytes / pixels, q.psnr_db, q.ssim,
                   window_max_hu(original, restored, rescale), q.window_mae_hu)


def our_point(ds: Any, *, key: Key, curve: str, setting: str, **encrypt: Any) -> RDPoint:
    """Our lossy mode through the real pipeline: ``encrypt_instance(ds, mode="lossy", **encrypt)``,
    the payload's size, ``decrypt_instance``, the restored pixels measured."""
    from dicomcrypt.pipeline import decrypt_instance, encrypt_instance
    from dicomcrypt.roundtrip import ct_rescale

    sealed = encrypt_instance(ds, key=key, mode="lossy", **encrypt)
    if sealed.mode != "lossy":
        raise UnsupportedImageError(f"the pipeline used {sealed.mode} instead of lossy: {sealed.note}")
    restored, _ = dicom.read_frames(decrypt_instance(sealed.dataset, keys=key).dataset)
    original, _ = dicom.read_frames(ds)
    return measure(curve, setting, int(sealed.metrics["payload_bytes"]), original, restored, rescale=ct_rescale(ds))


def our_points(ds: Any, *, key: Key, qualities: tuple[int, ...] = OUR_QUALITIES,
               models: Collection[str] | None = None) -> list[RDPoint]:
    """Every lossy point our codec offers for ``ds``: THE function that knows how to ask for them.

    The default codec (wavelet) at each of ``qualities`` (curve :data:`OURS`,
    ``encrypt_instance(..., quality=Q)``), then each shipped autoencoder of the image's channel
    count (the paper's network among them) with each latent format, for comparison. ``models``
    narrows the autoencoders measured (None: all of the image's channel count; the benchmark asks
    for fewer).
    """
    from dicomcrypt.codec.registry import DEFAULT_CODECS
    from dicomcrypt.evaluation.catalogue import installed_models
    from dicomcrypt.settings import LATENT_FORMATS

    samples = int(ds.get("SamplesPerPixel", 1))
    points = [our_point(ds, key=key, curve=OURS, setting=f"quality {q}", quality=q) for q in qualities]
    for model in installed_models():
        if model.channels != samples or (models is not None and model.model_id not in models):
            continue
        if model.model_id in DEFAULT_CODECS.values():  # the wavelet codec: the quality levels above
            continue
        for latent_format in LATENT_FORMATS:
            points.append(our_point(ds, key=key, curve=model.model_id, setting=f"latent {latent_format}",
                                    model=model.model_id, latent_format=latent_format))
    return points


def headline_curve(points: list[RDPoint], samples: int) -> str:
    """The curve that stands for "our codec": the quality levels once they exist, else the default model."""
    from dicomcrypt.codec.registry import DEFAULT_MODELS

    return OURS if any(p.curve == OURS for p in points) else DEFAULT_MODELS[samples]


def anchor_points(original: np.ndarray, rescale: tuple[float, float] | None,
                  codecs: tuple[str, ...] = anchors.LOSSY_ANCHORS) -> list[RDPoint]:
    """Each anchor's RD curve on ``original`` (``(F, H, W, C)``), every stream decoded and measured."""
    pixels = anchors.prepare(original)
    return [measure(name, point.setting, point.nbytes, original, point.decoded, rescale=rescale)
            for name in codecs for point in anchors.curve(pixels, name)]


def image_rd(ds: Any, name: str, *, key: Key, qualities: tuple[int, ...] = OUR_QUALITIES,
             codecs: tuple[str, ...] = anchors.LOSSY_ANCHORS, bd_range: tuple[float, float] = BD_RANGE_DB) -> ImageRD:
    """The whole RD report of one image: our points, the anchors' curves, BD-rates against JPEG 2000."""
    from dicomcrypt.roundtrip import ct_rescale

    original, fmt = dicom.read_frames(ds)
    result = ImageRD(name, str(ds.get("Modality", "")),
                     f"{fmt.columns}x{fmt.rows}x{fmt.frames}x{fmt.samples_per_pixel}",
                     int(np.prod(original.shape[:3])))
    result.points = our_points(ds, key=key, qualities=qualities) + anchor_points(original, ct_rescale(ds), codecs)
    curves = result.curves()
    if REFERENCE in curves:
        reference = [(p.bpp, p.psnr_db) for p in curves[REFERENCE]]
        result.bd_rate = {curve: bd_rate(reference, [(p.bpp, p.psnr_db) for p in points], bd_range)
                          for curve, points in curves.items() if curve != REFERENCE}
    return result


def bd_rate(reference: list[tuple[float, float]], test: list[tuple[float, float]],
            psnr_range: tuple[float, float] = BD_RANGE_DB) -> float | None:
    """Bjontegaard delta rate of ``test`` against ``reference``, in percent, from (rate, PSNR dB)
    points; None when the curves share less than :data:`MIN_OVERLAP_DB` inside ``psnr_range``."""
    from scipy.interpolate import PchipInterpolator  # type: ignore[import-untyped]

    ref, tst = _monotone(reference), _monotone(test)
    if len(ref) < 2 or len(tst) < 2:
        return None
    low = max(psnr_range[0], ref[0][1], tst[0][1])
    high = min(psnr_range[1], ref[-1][1], tst[-1][1])
    if high - low < MIN_OVERLAP_DB:
        return None
    integrals = []
    for curve in (ref, tst):
        psnr = np.array([p for _, p in curve])
        log_rate = np.log10([r for r, _ in curve])
        integrals.append(float(PchipInterpolator(psnr, log_rate).integrate(low, high)))
    return float((10.0 ** ((integrals[1] - integrals[0]) / (high - low)) - 1.0) * 100.0)


def _monotone(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points by rising rate, keeping only those that raise PSNR (a larger stream that is no
    better is never what a user would pick, and PCHIP needs rising PSNR)."""
    kept: list[tuple[float, float]] = []
    for rate, psnr in sorted(p for p in points if p[0] > 0 and math.isfinite(p[1])):
        if not kept or psnr > kept[-1][1]:
            kept.append((rate, psnr))
    return kept


def plot(result: ImageRD, headline: str) -> bytes:
    """PSNR and SSIM against bits per pixel, every curve of ``result``, as PNG bytes (Agg, no pyplot)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(12.0, 5.0), layout="constrained")
    psnr_ax, ssim_ax = fig.subplots(1, 2)
    fig.suptitle(f"{result.file} ({result.modality}, {result.geometry}): rate-distortion")
    for curve, points in result.curves().items():
        style = {"linewidth": 2.5, "marker": "o"} if curve == headline else {"linewidth": 1.2, "marker": "."}
        label = f"{curve} (ours)" if curve == headline else curve
        bpp = [p.bpp for p in points]
        psnr_ax.plot(bpp, [p.psnr_db for p in points], label=label, **style)
        ssim_ax.plot(bpp, [p.ssim for p in points], label=label, **style)
    for ax, ylabel in ((psnr_ax, "PSNR over the image's range (dB)"), (ssim_ax, "SSIM")):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks collide on short log spans
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    psnr_ax.axhspan(*BD_RANGE_DB, color="grey", alpha=0.08, label="BD-rate range")
    psnr_ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def to_markdown(results: list[ImageRD], headlines: dict[str, str], bd_range: tuple[float, float] = BD_RANGE_DB) -> str:
    """The BD-rate table (each curve against JPEG 2000) and each image's points."""
    curves = sorted({c for r in results for c in r.bd_rate})
    lines = [
        "# Rate-distortion report", "",
        f"BD-rate against {REFERENCE} over {bd_range[0]:g}-{bd_range[1]:g} dB (PSNR over each image's range; "
        "PCHIP; negative = fewer bits for the same PSNR; - = the curves share less than "
        f"{MIN_OVERLAP_DB} dB in that range).", "",
        "| image | " + " | ".join(curves) + " |",
        "| --- |" + " --- |" * len(curves),
    ]
    for r in results:
        cells = [_percent(r.bd_rate.get(c)) for c in curves]
        lines.append(f"| {r.file} | " + " | ".join(cells) + " |")
    for r in results:
        lines += ["", f"## {r.file} ({r.modality}, {r.geometry}); ours = {headlines[r.file]}", "",
                  "| curve | setting | kB | bpp | PSNR dB | SSIM | CT brain-window error, max / mean |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for curve, points in r.curves().items():
            for p in points:
                hu = "-" if p.window_max_hu is None else f"{p.window_max_hu:.0f} / {p.window_mae_hu:.1f} HU"
                lines.append(f"| {curve} | {p.setting} | {p.nbytes / 1e3:.1f} | {p.bpp:.3f} | {p.psnr_db:.2f} "
                             f"| {p.ssim:.4f} | {hu} |")
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def summary(results: list[ImageRD], headlines: dict[str, str]) -> dict[str, Any]:
    """Median BD-rate of the headline curves against JPEG 2000 (for the JSON and the printed table)."""
    ours = [r.bd_rate.get(headlines[r.file]) for r in results]
    known = [v for v in ours if v is not None]
    return {"reference": REFERENCE, "bd_range_db": list(BD_RANGE_DB),
            "headline_bd_rate_median": statistics.median(known) if known else None,
            "headline_bd_rate_images": len(known)}
