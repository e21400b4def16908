"""Fitting a wavelet codec model's learned parts on training images.

What is learned, all by counting on the training frames (no gradient needed, minutes on a CPU):

- **frequency tables**: for every context of :mod:`.entropy`, the token histogram over the
  training frames coded exactly and at several qualities, quantised to integers. A stream uses
  them where they cost fewer bits than sending its own table (small images gain the most);
- **reconstruction offsets**: per band class, the mean position of the coefficients inside their
  quantiser interval (the centroid, which for peaked wavelet statistics lies below the middle),
  in 1/64 of a step. The decoder puts each value there, which lowers the error at no cost in bits.
  (The encoder now fits each band's offset to the image it codes, :func:`.rdo.fitted_recon`; the
  model's are what a band with too few non-zero indices falls back to.) Indices are counted as
  the encoder chooses them (:func:`.rdo.choose_indices`), so the tables match what streams code.

The result is a new :class:`WaveletParams`; ``scripts/train_default_models.py`` writes it as a
model file with :func:`write_model`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dicomcrypt.codec.wavelet import bands, entropy, rdo, stream, transform
from dicomcrypt.codec.wavelet.model import ARCH, WaveletParams, band_class, quantiser_for

FIT_QUALITIES = (35, 50, 65, 80)


def fit(frames: Iterable[tuple[np.ndarray, bool]], base: WaveletParams,
        qualities: tuple[int, ...] = FIT_QUALITIES) -> tuple[WaveletParams, dict[str, Any]]:
    """Fit tables and reconstruction offsets on ``(frame (H, W, C) integers, colour)`` pairs.

    Returns the fitted parameters and a summary (frames, coefficients counted) for the model card.
    """
    counts = np.zeros((entropy.CONTEXTS, entropy.TOKENS), dtype=np.int64)
    classes = transform.MAX_LEVELS + 1
    position_sum = np.zeros(classes)
    position_count = np.zeros(classes)
    seen = 0
    costs = rdo.token_costs(base.tables)  # the RD choice weighs bits with the tables being refitted
    for frame, colour in frames:
        seen += 1
        height, width, _planes = frame.shape
        levels = transform.levels_for(height, width)
        counts += _counts(stream.analyse(frame, colour=colour, quantiser=None, levels=levels), levels, colour)
        value_range = int(frame.max()) - int(frame.min())
        for quality in qualities:
            quantiser = quantiser_for(base, frame, base.pixel_step(quality, value_range), colour)
            planes = stream.analyse(frame, colour=colour, quantiser=quantiser, levels=levels)
            quantised = []
            for index, plane in enumerate(planes):
                q = rdo.choose_indices(plane, levels, quantiser.steps[index], quantiser.recon[index],
                                       kind=1 if index > 0 else 0, costs=costs, step_fraction=stream.STEP_FRACTION)
                _positions(plane, q, levels, quantiser.steps[index], total=position_sum, count=position_count)
                quantised.append(q)
            counts += _counts(quantised, levels, colour)
    recon = tuple(
        int(np.clip(round(64 * position_sum[c] / position_count[c]), -64, 63)) if position_count[c] else 0
        for c in range(classes)
    )
    tables = {int(c): entropy.quantise_counts(counts[c]).astype(np.float64)[: int(np.flatnonzero(counts[c])[-1]) + 1]
              for c in np.flatnonzero(counts.sum(axis=1))}
    params = dataclasses.replace(base, recon=recon, tables=tables)
    summary = {"frames": seen, "coefficients": int(counts.sum()), "qualities": list(qualities),
               "recon": list(recon)}
    return params, summary


def _counts(planes: list[np.ndarray], levels: int, colour: bool) -> np.ndarray:
    collector = bands.Collector()
    for index, plane in enumerate(planes):
        plane = plane.copy()
        rect = transform.band_slices(plane.shape[0], plane.shape[1], levels)[0][2]
        plane[rect] = bands.low_differences(plane[rect])
        bands.traverse(plane, levels, 1 if index > 0 else 0, collector)
    return collector.plan.counts


def _positions(coefficients: np.ndarray, q: np.ndarray, levels: int, steps: tuple[int, ...],
               *, total: np.ndarray, count: np.ndarray) -> None:
    """Where, in units of the step, non-zero coefficients sit above their index, per band class."""
    rects = transform.band_slices(coefficients.shape[0], coefficients.shape[1], levels)
    for (level, name, rect), step in zip(rects, steps):
        c, k = coefficients[rect], q[rect]
        nonzero = k != 0
        if not nonzero.any():
            continue
        position = np.abs(c[nonzero]) * (1 << stream.STEP_FRACTION) / step - np.abs(k[nonzero])
        cls = band_class(level, name, levels)
        total[cls] += float(np.clip(position, -1.0, 1.0).sum())
        count[cls] += int(nonzero.sum())


def model_card(model_id: str, channels: int, summary: dict[str, Any]) -> str:
    """The model card: what was fitted on what, and where the measurements are."""
    files = ", ".join(f"`{name}`" for name in summary.get("files", []))
    return (
        f"# {model_id}: wavelet codec model ({'grey' if channels == 1 else 'colour'})\n\n"
        "The default codec of dicomcrypt's `lossless` and `lossy` modes for "
        f"{channels}-sample images (docs/codec.md). Architecture `wavelet`: integer lifting wavelet "
        "(5/3 exact, 9/7 lossy), context-modelled ANS coding; no neural network, no torch.\n\n"
        "## Fitted\n\n"
        f"- by {summary.get('trained_by', 'scripts/train_default_models.py')}\n"
        f"- frequency tables of every context and reconstruction offsets {summary.get('recon')} "
        f"(1/64 step, low band then levels 1..5), from {summary.get('frames')} frames coded exactly and "
        f"at qualities {summary.get('qualities')} ({summary.get('coefficients')} coefficients)\n"
        f"- files: {files}\n"
        f"- held out: {summary.get('held_out', '')}\n\n"
        "## Quality\n\n"
        "Measured on the held-out images against JPEG-LS, JPEG 2000 and JPEG-XL: docs/codec.md, "
        "\"Measurements\" (`benchmarks/bench_wavelet.py`).\n"
    )


def write_model(folder: Path, stem: str, model_id: str, *, channels: int, params: WaveletParams,
                extra: dict[str, Any]) -> Path:
    """``<stem>.params`` (the parameters) and ``<stem>.json`` (metadata with their SHA-256), atomically."""
    from dicomcrypt.atomic import write_atomic

    blob = (json.dumps(params.to_json(), sort_keys=True, separators=(",", ":")) + "\n").encode()
    summary = extra.get("training", {})
    write_atomic(folder / f"{stem}.md", model_card(model_id, channels, summary).encode(), force=True)
    write_atomic(folder / f"{stem}.params", blob, force=True)
    meta = {"model_id": model_id, "arch": ARCH, "channels": channels, "weights": f"{stem}.params",
            "sha256": hashlib.sha256(blob).hexdigest(), "card": f"{stem}.md", **extra}
    path = folder / f"{stem}.json"
    write_atomic(path, (json.dumps(meta, indent=2) + "\n").encode(), force=True)
    return path
