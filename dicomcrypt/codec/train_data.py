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
from typing import TYPE_CHECKING

import numpy as np

from dicomcrypt.codec import normalise

if TYPE_CHECKING:
    from pydicom import Dataset

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

    ``exclude``: file-name prefixes of held-out evaluation files. They are never used, and neither
    is any other file of their study or holding one of their frames (the same image stored under
    another name or transfer syntax), so an evaluation never measures memory. Palette colour goes
    through its lookup table; 1-bit, float and 32-bit data are skipped (the codec never sees them).
    """
    paths = list(paths)
    held_out = [path for path in paths if Path(path).name.startswith(exclude)] if exclude else []
    held_studies, held_frames = _identity(held_out)
    skip = set(held_out)
    images: list[TrainingImage] = []
    skipped: list[Skipped] = [Skipped(str(path), "held out") for path in held_out]
    seen: set[str] = set()
    for path in paths:
        if path in skip:
            continue
        name = str(path)
        read = read_image(path, modality)
        if isinstance(read, Skipped):
            skipped.append(read)
            continue
        ds, frames, padding = read
        digests = [_digest(frame) for frame in frames]
        if held_studies & {str(getattr(ds, "StudyInstanceUID", "") or "")} or held_frames.intersection(digests):
            skipped.append(Skipped(name, "same study or pixels as a held-out file"))
            continue
        if frames.shape[-1] != channels:
            skipped.append(Skipped(name, f"{frames.shape[-1]} samples per pixel"))
            continue
        if min(frames.shape[1:3]) < MIN_SIDE:
            skipped.append(Skipped(name, f"smaller than {MIN_SIDE} px"))
            continue
        if frames.shape[0] > MAX_FRAMES_PER_FILE:
            chosen = np.linspace(0, frames.shape[0] - 1, MAX_FRAMES_PER_FILE).round().astype(int)
            frames, digests = frames[chosen], [digests[i] for i in chosen]
        keep = []
        for index, digest in enumerate(digests):
            if digest not in seen:
                seen.add(digest)
                keep.append(index)
        if not keep:
            skipped.append(Skipped(name, "duplicate pixels"))
            continue
        frames = frames[keep]
        norm = normalise.fit(frames, padding)
        images.append(TrainingImage(Path(path).name, _group(ds, name), normalise.to_unit(frames, norm)))
    return images, skipped


def read_image(path: Path, modality: str | None = None) -> tuple[Dataset, np.ndarray, int | None] | Skipped:
    """``(dataset, frames, padding value)`` as the codec sees them (palette through its LUT), or why not."""
    import pydicom

    from dicomcrypt import dicom

    name = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            if modality and str(ds.get("Modality", "")).upper() != modality.upper():
                return Skipped(name, f"modality {ds.get('Modality', '?')}")
            if "PixelData" not in ds:
                return Skipped(name, "no pixel data")
            frames, fmt = dicom.read_frames(ds)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is skipped and reported
        return Skipped(name, f"unreadable ({type(exc).__name__})")
    if fmt.is_palette:
        return ds, _through_palette(ds, frames), fmt.padding_value
    if not fmt.model_ready:
        return Skipped(name, "pixel format the model does not serve")
    return ds, frames, fmt.padding_value


def _identity(paths: list[Path]) -> tuple[set[str], set[str]]:
    """Study UIDs and frame digests of the held-out files, to keep their copies out too."""
    studies: set[str] = set()
    frames: set[str] = set()
    for path in paths:
        read = read_image(path)
        if isinstance(read, Skipped):
            continue
        ds, pixels, _padding = read
        studies.add(str(getattr(ds, "StudyInstanceUID", "") or ""))
        frames.update(_digest(frame) for frame in pixels)
    studies.discard("")
    return studies, frames


def _digest(frame: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()


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


def _group(ds: Dataset, fallback: str) -> str:
    for keyword in ("StudyInstanceUID", "PatientID"):
        value = str(getattr(ds, keyword, "") or "")
        if value:
            return f"{keyword}:{value}"
    return f"file:{fallback}"


def _through_palette(ds: Dataset, frames: np.ndarray) -> np.ndarray:
    """Palette colour as the RGB a viewer shows (training only: the codec itself sends palette as standard)."""
    from pydicom.pixels import apply_color_lut

    rgb = apply_color_lut(frames[..., 0], ds)
    if rgb.ndim == 3:
        rgb = rgb[None]
    return rgb.astype(rgb.dtype.newbyteorder("="))
