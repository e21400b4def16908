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
from typing import TYPE_CHECKING, Any

import numpy as np

from dicomcrypt.codec.wavelet import transform
from dicomcrypt.errors import InvalidInputError, ModelError, ModelMismatchError

if TYPE_CHECKING:
    from dicomcrypt.codec.wavelet.stream import Quantiser

ARCH = "wavelet"
PARAMS_FORMAT = "dicomcrypt-wavelet/1"
QUALITY_RANGE = (1, 100)
EXACT_CODINGS = ("wavelet", "jpeg-ls", "jpeg-xl")


@dataclass(frozen=True)
class WaveletParams:
    """What a wavelet model file holds (see the module docstring)."""

    default_quality: int = 60
    octave_per_quality: float = 12.5  # quality Q -> pixel step 2 ** ((100 - Q) / octave_per_quality) ...
    relative_octaves: float = 4.0  # ... or range * 2 ** -(Q / octave_per_quality + relative_octaves), if larger
    fraction_bits: int = 2
    rounding: float = 0.4  # dead-zone rounding of streams before RD-optimised indices; kept so model files parse
    chroma_step: float = 1.0
    recon: tuple[int, ...] = ()  # per band class (0 = low band, 1.. = detail level), 1/64 of a step
    band_weights: tuple[float, ...] = ()  # per band class: multiplies the synthesis-gain step
    exact_codings: tuple[str, ...] = EXACT_CODINGS
    tables: dict[int, np.ndarray] = field(default_factory=dict)  # context -> integer frequencies

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> WaveletParams:
        if data.get("format") != PARAMS_FORMAT:
            raise ModelError(f"{where}: parameters format {data.get('format')!r}, expected {PARAMS_FORMAT}")
        try:
            params = cls(
                default_quality=int(data["default_quality"]),
                octave_per_quality=float(data["octave_per_quality"]),
                relative_octaves=float(data["relative_octaves"]),
                fraction_bits=int(data["fraction_bits"]),
                rounding=float(data["rounding"]),
                chroma_step=float(data["chroma_step"]),
                recon=tuple(int(v) for v in data["recon"]),
                band_weights=tuple(float(v) for v in data["band_weights"]),
                exact_codings=tuple(str(v) for v in data["exact_codings"]),
                tables=_tables(data.get("tables", {}), where),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: parameters incomplete or mistyped ({exc})") from exc
        if not set(params.exact_codings) <= set(EXACT_CODINGS) or "jpeg-ls" not in params.exact_codings:
            raise ModelError(f"{where}: exact codings {params.exact_codings} must include jpeg-ls "
                            f"(known: {', '.join(EXACT_CODINGS)})")
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
            "relative_octaves": self.relative_octaves,
            "fraction_bits": self.fraction_bits,
            "rounding": self.rounding,
            "chroma_step": self.chroma_step,
            "recon": list(self.recon),
            "band_weights": list(self.band_weights),
            "exact_codings": list(self.exact_codings),
            "tables": {str(c): [int(v) for v in row] for c, row in sorted(self.tables.items())},
        }

    def pixel_step(self, quality: int | None, value_range: int) -> float:
        """The quantiser step in stored pixel units for a quality (None: the model's default).

        An absolute step (in stored units, so HU for CT: what a window shows) or a share of the
        image's value range, whichever is larger: one knob behaves alike on 8-bit ultrasound,
        12-bit MR and 15-bit radiographs, and a quality never costs more than its share of the range.
        """
        quality = self.default_quality if quality is None else check_quality(quality)
        octaves = quality / self.octave_per_quality
        absolute = 2.0 ** (100 / self.octave_per_quality - octaves)
        relative = max(value_range, 1) * 2.0 ** -(octaves + self.relative_octaves)
        return float(max(absolute, relative))

    def band_steps(self, height: int, width: int, levels: int, pixel_step: float, plane_gain: float) -> tuple[int, ...]:
        """Q8 integer step per band (coding order) for a pixel step; the encoder writes them in the stream.

        ``plane_gain`` is the plane's weight after the colour transform (:data:`RCT_PLANE_GAINS`);
        chroma planes are further scaled by the fitted ``chroma_step``."""
        gains = _gains(levels)
        chroma = self.chroma_step if plane_gain != 1.0 else 1.0
        scale = pixel_step * (1 << self.fraction_bits) * chroma * 256 / plane_gain
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


# Synthesis gain of each YCoCg-R plane relative to Y, as a step divisor: a unit error in Y moves
# R, G and B by 1 (energy 3), in Co R and B by 1/2 (0.5), in Cg all three by 1/2 (0.75).
RCT_PLANE_GAINS = (1.0, (0.5 / 3) ** 0.5, (0.75 / 3) ** 0.5)


def quantiser_for(params: WaveletParams, pixels: np.ndarray, step: float, colour: bool) -> Quantiser:
    """The lossy quantiser of one ``(H, W, C)`` frame at a pixel step: integer steps per band."""
    from dicomcrypt.codec.wavelet.stream import Quantiser

    height, width, planes = pixels.shape
    levels = transform.levels_for(height, width)
    gains = RCT_PLANE_GAINS if colour else (1.0,) * planes
    steps = tuple(_finer_low_band(params.band_steps(height, width, levels, step, gains[index]))
                  for index in range(planes))
    recon = tuple(params.band_recon(height, width, levels) for _ in range(planes))
    offset = int(np.round(np.median(pixels))) if pixels.size else 0
    return Quantiser(params.fraction_bits, offset, steps, recon)


def _finer_low_band(steps: tuple[int, ...]) -> tuple[int, ...]:
    """The low band (first) at :data:`rdo.LOW_BAND_STEP` of its step: see :mod:`.rdo`."""
    from dicomcrypt.codec.wavelet.rdo import LOW_BAND_STEP

    return (max(1, round(steps[0] * LOW_BAND_STEP)), *steps[1:]) if steps else steps


def _tables(value: object, where: str) -> dict[int, np.ndarray]:
    """The model's frequency tables, checked as strictly as a stream's (entropy.unpack_tables)."""
    from dicomcrypt.codec.wavelet import entropy

    if not isinstance(value, dict):
        raise ModelError(f"{where}: tables must be an object of context -> frequencies")
    tables = {}
    for key, row in value.items():
        if not (str(key).isdigit() and int(key) < entropy.CONTEXTS and isinstance(row, list)
                and 0 < len(row) <= entropy.TOKENS and all(isinstance(v, int) and 0 <= v <= entropy.TABLE_TOTAL
                                                             for v in row) and sum(row) > 0):
            raise ModelError(f"{where}: frequency table {key!r} is malformed")
        tables[int(key)] = np.asarray(row, dtype=np.float64)
    return tables


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
