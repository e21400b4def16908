"""The four noise types of the paper's Table 6, with their parameters stated.

The paper adds salt-and-pepper, speckle, Poisson and Gaussian noise before encoding and reports
SSIM/MSE of the noisy image and of the decoder's output, but gives no noise parameters. Ours
work on the codec's own input, floats in [0, 1] after :mod:`dicomcrypt.codec.normalise` has
mapped each frame's value range (padding excluded) to [0, 1]; so every parameter is relative to
the image's range, and an 8-bit fundus photo and a 16-bit radiograph get the same noise.

The strengths are scikit-image's ``random_noise`` defaults (the likeliest setting of the paper's
Python code), with one correction:

- skimage's Poisson mode scales by ``2**ceil(log2(number of distinct values))``, which is 256
  counts at full scale for 8-bit data but up to 65536 for 16-bit data: there it adds almost no
  noise (relative SD 0.4 % instead of 6 % at full scale). We fix the count instead: a value of
  1.0 is 256 photons, whatever the bit depth. That is the noise skimage adds to the paper's 8-bit
  images, and a plausible low-dose count for a detector element.

Used by ``dicomcrypt evaluate`` (Table 6) and by training's denoising augmentation, so the API
is kept stable: :func:`add_noise`, :data:`NOISE_KINDS`, :data:`NOISE_PARAMETERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

NOISE_KINDS: tuple[str, ...] = ("salt_and_pepper", "speckle", "poisson", "gaussian")
"""Names accepted by :func:`add_noise`, in the paper's Table 6 order."""


@dataclass(frozen=True)
class NoiseSpec:
    """One noise type: its parameters (on the [0, 1] scale) and what they mean."""

    kind: str
    label: str
    parameters: Mapping[str, float] = field(default_factory=dict)
    description: str = ""


NOISE_PARAMETERS: Mapping[str, NoiseSpec] = MappingProxyType(
    {
        "salt_and_pepper": NoiseSpec(
            "salt_and_pepper",
            "salt & pepper",
            MappingProxyType({"amount": 0.05, "salt_vs_pepper": 0.5}),
            "a share `amount` of pixels set to 0 or 1 (half each): dead and hot detector elements, bit errors",
        ),
        "speckle": NoiseSpec(
            "speckle",
            "speckle",
            MappingProxyType({"var": 0.01}),
            "multiplicative: x + x*n, n ~ N(0, var) (SD 0.1): ultrasound and coherent-imaging speckle",
        ),
        "poisson": NoiseSpec(
            "poisson",
            "Poisson",
            MappingProxyType({"peak_counts": 256.0}),
            "photon counting: Poisson(x * peak_counts) / peak_counts, the same for every bit depth "
            "(skimage's own scaling adds almost none on 12-16 bit data)",
        ),
        "gaussian": NoiseSpec(
            "gaussian",
            "Gaussian",
            MappingProxyType({"mean": 0.0, "var": 0.01}),
            "additive: x + n, n ~ N(mean, var) (SD 0.1 of the image's range): electronic noise",
        ),
    }
)
"""The parameters :func:`add_noise` uses, by kind (read-only)."""


def add_noise(
    image01: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    params: Mapping[str, float] | None = None,
) -> np.ndarray:
    """A noisy copy of ``image01`` (floats in [0, 1], any shape), clipped to [0, 1].

    ``params`` overrides entries of :data:`NOISE_PARAMETERS` (e.g. ``{"var": 0.001}``); the same
    ``rng`` state gives the same noise. The result has the input's float dtype; the input is
    never modified. Colour images get independent noise per sample, as skimage does.
    """
    if kind not in NOISE_PARAMETERS:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {', '.join(NOISE_KINDS)}")
    image = np.asarray(image01)
    if image.dtype.kind != "f":
        raise ValueError(f"noise needs floats in [0, 1], not {image.dtype} (normalise the pixels first)")
    if image.size and (not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0):
        raise ValueError("noise needs finite values in [0, 1]")
    settings = dict(NOISE_PARAMETERS[kind].parameters)
    if params:
        unknown = set(params) - set(settings)
        if unknown:
            raise ValueError(
                f"{kind} noise has no parameter {', '.join(sorted(unknown))}; it takes {', '.join(settings)}"
            )
        settings.update(params)
    if any(value < 0 for name, value in settings.items() if name != "mean"):
        raise ValueError(f"{kind} noise parameters must not be negative: {settings}")
    noisy = _GENERATORS[kind](image.astype(np.float64), rng, settings)
    return np.clip(noisy, 0.0, 1.0).astype(image.dtype, copy=False)


def _salt_and_pepper(x: np.ndarray, rng: np.random.Generator, p: dict[str, float]) -> np.ndarray:
    out = x.copy()
    hit = rng.random(x.shape) < p["amount"]
    salt = rng.random(x.shape) < p["salt_vs_pepper"]
    out[hit & salt] = 1.0
    out[hit & ~salt] = 0.0
    return out


def _speckle(x: np.ndarray, rng: np.random.Generator, p: dict[str, float]) -> np.ndarray:
    return x + x * rng.normal(0.0, np.sqrt(p["var"]), x.shape)


def _poisson(x: np.ndarray, rng: np.random.Generator, p: dict[str, float]) -> np.ndarray:
    peak = p["peak_counts"]
    if peak <= 0:
        raise ValueError("poisson noise needs peak_counts > 0")
    return rng.poisson(x * peak) / peak


def _gaussian(x: np.ndarray, rng: np.random.Generator, p: dict[str, float]) -> np.ndarray:
    return x + rng.normal(p["mean"], np.sqrt(p["var"]), x.shape)


_GENERATORS: dict[str, Callable[[np.ndarray, np.random.Generator, dict[str, float]], np.ndarray]] = {
    "salt_and_pepper": _salt_and_pepper,
    "speckle": _speckle,
    "poisson": _poisson,
    "gaussian": _gaussian,
}


def describe_parameters() -> list[dict[str, object]]:
    """The parameter table as plain data, for reports (JSON and Markdown)."""
    return [
        {"kind": s.kind, "label": s.label, "parameters": dict(s.parameters), "description": s.description}
        for s in NOISE_PARAMETERS.values()
    ]
