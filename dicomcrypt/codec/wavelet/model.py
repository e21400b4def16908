"""A wavelet codec model: the fitted parameters of the codec, loaded like any model.

A model is the same three files as the autoencoders' (``<stem>.json`` metadata, a parameters
file whose SHA-256 the metadata and every envelope carry, ``<stem>.md`` card), with ``arch``
``"wavelet"``. The parameters are small JSON: how the quality knob maps to a quantiser step,
the dead zone, the per-band reconstruction offsets and band weights fitted by
``scripts/train_default_models.py`` (:mod:`dicomcrypt.codec.wavelet.fit`), and which exact
codings compete per frame. No torch: loading and coding are numpy and constriction only.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dicomcrypt.codec.wavelet import transform
from dicomcrypt.errors import InvalidInputError, ModelError, ModelMismatchError

ARCH = "wavelet"
PARAMS_FORMAT = "dicomcrypt-wavelet/1"
QUALITY_RANGE = (1, 100)
EXACT_CODINGS = ("wavelet", "jpeg-ls", "jpeg-xl")


@dataclass(frozen=True)
class WaveletParams:
    """What a wavelet model file holds (see the module docstring)."""

    default_quality: int = 75
    octave_per_quality: float = 12.5  # quality Q -> pixel step 2 ** ((100 - Q) / octave_per_quality)
    fraction_bits: int = 2
    rounding: float = 0.5
    chroma_step: float = 1.0
    recon: tuple[int, ...] = ()  # per band class (0 = low band, 1.. = detail level), 1/64 of a step
    band_weights: tuple[float, ...] = ()  # per band class: multiplies the synthesis-gain step
    exact_codings: tuple[str, ...] = EXACT_CODINGS

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> WaveletParams:
        if data.get("format") != PARAMS_FORMAT:
            raise ModelError(f"{where}: parameters format {data.get('format')!r}, expected {PARAMS_FORMAT}")
        try:
            params = cls(
                default_quality=int(data["default_quality"]),
                octave_per_quality=float(data["octave_per_quality"]),
                fraction_bits=int(data["fraction_bits"]),
                rounding=float(data["rounding"]),
                chroma_step=float(data["chroma_step"]),
                recon=tuple(int(v) for v in data["recon"]),
                band_weights=tuple(float(v) for v in data["band_weights"]),
                exact_codings=tuple(str(v) for v in data["exact_codings"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: parameters incomplete or mistyped ({exc})") from exc
        if not set(params.exact_codings) <= set(EXACT_CODINGS) or not params.exact_codings:
            raise ModelError(f"{where}: exact codings {params.exact_codings} (known: {', '.join(EXACT_CODINGS)})")
        if not 0 <= params.fraction_bits <= 8 or not 0.0 < params.rounding <= 0.5:
            raise ModelError(f"{where}: fraction_bits or rounding out of range")
        if any(not -64 <= r < 64 for r in params.recon):
            raise ModelError(f"{where}: reconstruction offsets must be in -64..63")
        return params

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PARAMS_FORMAT,
            "default_quality": self.default_quality,
            "octave_per_quality": self.octave_per_quality,
            "fraction_bits": self.fraction_bits,
            "rounding": self.rounding,
            "chroma_step": self.chroma_step,
            "recon": list(self.recon),
            "band_weights": list(self.band_weights),
            "exact_codings": list(self.exact_codings),
        }

    def pixel_step(self, quality: int | None) -> float:
        """The quantiser step in stored pixel units for a quality (None: the model's default)."""
        quality = self.default_quality if quality is None else check_quality(quality)
        return float(2.0 ** ((100 - quality) / self.octave_per_quality))

    def band_steps(self, height: int, width: int, levels: int, pixel_step: float, chroma: bool) -> tuple[int, ...]:
        """Q8 integer step per band (coding order) for a pixel step; the encoder writes them in the stream."""
        gains = _gains(levels)
        scale = pixel_step * (1 << self.fraction_bits) * (self.chroma_step if chroma else 1.0) * 256
        steps = []
        for (level, name, _rect), gain in zip(transform.band_slices(height, width, levels), gains):
            weight = _at(self.band_weights, band_class(level, name, levels), 1.0)
            steps.append(int(min(max(round(scale * weight / gain), 1), 1 << 24)))
        return tuple(steps)

    def band_recon(self, height: int, width: int, levels: int) -> tuple[int, ...]:
        return tuple(
            _at(self.recon, band_class(level, name, levels), 0)
            for level, name, _rect in transform.band_slices(height, width, levels)
        )


def band_class(level: int, name: str, levels: int) -> int:
    """Class of a band for the fitted per-band parameters: 0 the low band, else its level (1 finest)."""
    return 0 if name == "LL" else level


def check_quality(quality: object) -> int:
    """A quality is an integer 1..100; InvalidInputError otherwise."""
    low, high = QUALITY_RANGE
    if isinstance(quality, bool) or not isinstance(quality, int | np.integer) or not low <= int(quality) <= high:
        raise InvalidInputError(f"quality must be an integer from {low} to {high}, not {quality!r}")
    return int(quality)


def _at(values: tuple[Any, ...], index: int, default: Any) -> Any:
    return values[index] if 0 <= index < len(values) else default


@functools.lru_cache(maxsize=8)
def _gains(levels: int) -> tuple[float, ...]:
    """Synthesis gains on a canonical square (they hardly depend on the image size)."""
    side = 1 << (levels + 3)
    return tuple(transform.band_gains(side, side, levels, transform.CDF_97))


@dataclass(frozen=True)
class WaveletInfo:
    """What identifies a wavelet model in an envelope (the same fields the pipeline reads of any model)."""

    model_id: str
    sha256: bytes
    channels: int
    weights_path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    arch: str = ARCH


class WaveletModel:
    """A loaded wavelet codec model: its identity and fitted parameters."""

    def __init__(self, info: WaveletInfo, params: WaveletParams) -> None:
        self.info = info
        self.params = params

    def check_identity(self, model_id: str, sha256: bytes) -> None:
        """Raise :class:`ModelMismatchError` unless this is the model an envelope names."""
        if sha256 != self.info.sha256:
            raise ModelMismatchError(
                f"the data needs model {model_id} sha256 {sha256.hex()}, but the loaded model is "
                f"{self.info.model_id} sha256 {self.info.sha256.hex()}"
            )


def load(meta: dict[str, Any], data: bytes, sha256: bytes, weights_path: Path) -> WaveletModel:
    """The model from its metadata and the (already hash-checked) parameters file bytes."""
    where = f"model {meta['model_id']}"
    try:
        params_json = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{where}: parameters file is not JSON ({exc})") from exc
    if not isinstance(params_json, dict):
        raise ModelError(f"{where}: parameters file is not a JSON object")
    params = WaveletParams.from_json(params_json, where)
    return WaveletModel(WaveletInfo(meta["model_id"], sha256, meta["channels"], weights_path, meta), params)
