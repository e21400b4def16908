"""Training images from DICOM files: normalised as at inference, grouped by study, split by study.

Why by study: slices of one study are near-copies of each other; a validation slice whose
neighbour was trained on measures memory, not generalisation. So the split puts whole studies
(StudyInstanceUID; the patient when the study is missing; the file otherwise) on one side.
Frames that are exact copies (one image stored in several transfer syntaxes) are kept once.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicomcrypt.codec import normalise

MIN_SIDE = 32
MAX_FRAMES_PER_FILE = 8


@dataclass
class TrainingImage:
    """One file's frames, ready for the network."""

    name: str
    group: str  # the study (or patient, or file) it belongs to: the unit of the split
    frames: np.ndarray  # (F, H, W, C) float32 in [0, 1]


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why (shown by ``dicomcrypt train``)."""

    name: str
    reason: str


def collect(
    paths: Iterable[Path],
    *,
    channels: int,
    modality: str | None = None,
    exclude: tuple[str, ...] = (),
) -> tuple[list[TrainingImage], list[Skipped]]:
    """Read every usable image among ``paths``: ``channels`` samples, ``modality`` if given.

    ``exclude``: file-name prefixes never used (held-out evaluation files). Palette colour goes
    through its lookup table; 1-bit, float and 32-bit data are skipped (the codec never sees them).
    """
    import pydicom

    from dicomcrypt import dicom

    images: list[TrainingImage] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for path in paths:
        name = str(path)
        if Path(path).name.startswith(exclude):
            skipped.append(Skipped(name, "held out"))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                if modality and str(ds.get("Modality", "")).upper() != modality.upper():
                    skipped.append(Skipped(name, f"modality {ds.get('Modality', '?')}"))
                    continue
                if "PixelData" not in ds:
                    skipped.append(Skipped(name, "no pixel data"))
                    continue
                frames, fmt = dicom.read_frames(ds)
        except Exception as exc:  # noqa: BLE001 -- any unreadable file is skipped and reported
            skipped.append(Skipped(name, f"unreadable ({type(exc).__name__})"))
            continue
        if fmt.is_palette:
            frames = _through_palette(ds, frames)
        elif not fmt.model_ready:
            skipped.append(Skipped(name, "pixel format the model does not serve"))
            continue
        if frames.shape[-1] != channels:
            skipped.append(Skipped(name, f"{frames.shape[-1]} samples per pixel"))
            continue
        if min(frames.shape[1:3]) < MIN_SIDE:
            skipped.append(Skipped(name, f"smaller than {MIN_SIDE} px"))
            continue
        if frames.shape[0] > MAX_FRAMES_PER_FILE:
            frames = frames[np.linspace(0, frames.shape[0] - 1, MAX_FRAMES_PER_FILE).round().astype(int)]
        keep = []
        for index, frame in enumerate(frames):
            digest = hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                keep.append(index)
        if not keep:
            skipped.append(Skipped(name, "duplicate pixels"))
            continue
        frames = frames[keep]
        norm = normalise.fit(frames, fmt.padding_value)
        images.append(TrainingImage(Path(path).name, _group(ds, name), normalise.to_unit(frames, norm)))
    return images, skipped


def split_by_group(
    images: list[TrainingImage], validation_share: float, seed: int
) -> tuple[list[TrainingImage], list[TrainingImage]]:
    """Seeded split of whole groups (studies); at least one group on each side when there are two."""
    groups = sorted({image.group for image in images})
    if len(groups) < 2 or validation_share <= 0:
        return list(images), []
    order = np.random.default_rng(seed).permutation(len(groups))
    count = min(len(groups) - 1, max(1, math.ceil(validation_share * len(groups))))
    held = {groups[i] for i in order[:count]}
    return [im for im in images if im.group not in held], [im for im in images if im.group in held]


def sampling_weights(images: list[TrainingImage]) -> np.ndarray:
    """Per study sqrt(area) (capped at 512x512), shared among the study's files."""
    groups: dict[str, list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.group, []).append(index)
    weights = np.zeros(len(images))
    for members in groups.values():
        share = max(math.sqrt(min(images[i].frames.shape[1] * images[i].frames.shape[2], 512 * 512)) for i in members)
        weights[members] = share / len(members)
    return weights / weights.sum()


def _group(ds: object, fallback: str) -> str:
    for keyword in ("StudyInstanceUID", "PatientID"):
        value = str(getattr(ds, keyword, "") or "")
        if value:
            return f"{keyword}:{value}"
    return f"file:{fallback}"


def _through_palette(ds: object, frames: np.ndarray) -> np.ndarray:
    """Palette colour as the RGB a viewer shows (training only: the codec itself sends palette as standard)."""
    from pydicom.pixels import apply_color_lut

    rgb = apply_color_lut(frames[..., 0], ds)
    if rgb.ndim == 3:
        rgb = rgb[None]
    return rgb.astype(rgb.dtype.newbyteorder("="))
