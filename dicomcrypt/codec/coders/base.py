"""The coder contract and the registry: one coder per mode.

As pydicom keeps one decoder per transfer syntax, dicomcrypt keeps one :class:`Coder` per
envelope :class:`~dicomcrypt.envelope.Mode`. The pipeline never names a codec: it asks
:func:`coder_for` for the mode's coder, loads a model if the coder says it needs one, and calls
:meth:`Coder.pack` when encrypting and :meth:`Coder.unpack` when restoring. Everything else of
the recipe (reading pixels, the payload, the envelope, the DICOM placeholder, the digest check)
is the same for every coder, so a new codec is one module and one :func:`register` call in
``coders/__init__.py``; the recipe does not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dicomcrypt.envelope import Mode
from dicomcrypt.errors import InvalidInputError
from dicomcrypt.limits import DEFAULT_LIMITS, DecodeLimits

if TYPE_CHECKING:
    from dicomcrypt.dicom import PixelFormat
    from dicomcrypt.payload import PayloadMeta

__all__ = ["Coder", "CodingContext", "Derivation", "Packed", "coder_for", "register"]


@dataclass
class CodingContext:
    """What a coder may use besides the pixels.

    ``model`` is the loaded autoencoder when the coder ``needs_model`` (the pipeline loads it,
    and checks it against the envelope when restoring), else None. Coders record their sizes
    in ``metrics`` (``latent_bytes``, ``residual_bytes``, ...), which end up in the outcome.
    ``quality`` (1..100, None for the model's default) sets the lossy wavelet codec's step;
    ``psnr`` (dB over the image's range), when given, has the step searched per frame instead.
    ``effort`` (``settings.EFFORTS``, None for the default) which exact codings its lossless
    mode tries per frame (an encoder choice: the payload records the coding of each frame).
    ``limits`` bound what :meth:`Coder.unpack` may allocate and compute: the payload's
    metadata was checked against them, and a coder checks every section's own declared sizes
    against that metadata before decoding it (the sections are untrusted input too).
    """

    model: Any = None
    latent_format: str = "u8"
    metrics: dict[str, float] = field(default_factory=dict)
    limits: DecodeLimits = DEFAULT_LIMITS
    quality: int | None = None
    psnr: float | None = None
    effort: str | None = None


@dataclass(frozen=True)
class Packed:
    """What :meth:`Coder.pack` made: payload sections, and the payload metadata fields it sets.

    ``meta`` holds keyword arguments of :class:`~dicomcrypt.payload.PayloadMeta`
    (``normalisation``, ``residual_predictor``); the pipeline adds the fields every mode has.
    """

    sections: dict[str, bytes]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Derivation:
    """How an inexact coder's output is described as a derived image (PS3.3 C.7.6.1.1.5)."""

    ratio: float  # Lossy Image Compression Ratio (0028,2112)
    method: str  # Lossy Image Compression Method (0028,2114), CS <= 16 characters
    description: str  # Derivation Description (0008,2111)


class Coder(ABC):
    """Pixels <-> payload sections for one mode.

    ``exact`` coders restore every pixel value; the pipeline then stores the original pixels'
    digest and refuses a restored image that does not match it. Inexact coders make a derived
    image instead and say how it is described (:meth:`derivation`).
    """

    mode: ClassVar[Mode]
    needs_model: ClassVar[bool] = False
    exact: ClassVar[bool] = True

    @abstractmethod
    def pack(self, frames: np.ndarray, fmt: PixelFormat, context: CodingContext) -> Packed:
        """Code ``(F, H, W, C)`` frames read from a dataset with format ``fmt``."""

    @abstractmethod
    def unpack(self, sections: Mapping[str, bytes], meta: PayloadMeta, context: CodingContext) -> np.ndarray:
        """Rebuild frames of ``meta.shape`` and ``meta.dtype`` from what :meth:`pack` made."""

    def derivation(self, frames: np.ndarray, sections: Mapping[str, bytes], model_id: str) -> Derivation | None:
        """How restored ``frames`` are described as a derived image; None for an exact coder,
        whose output is the original image. Inexact coders must override it (see :func:`register`)."""
        return None


_CODERS: dict[Mode, Coder] = {}


def register(coder: Coder, *, replace: bool = False) -> Coder | None:
    """Make ``coder`` the coder of its mode; returns the coder it replaced, if any.

    A second coder for a mode is refused unless ``replace`` is given, so two plug-ins cannot
    silently fight over one mode.
    """
    if not coder.exact and type(coder).derivation is Coder.derivation:
        raise ValueError(f"{type(coder).__name__} is inexact: it must say how its output is described (derivation)")
    previous = _CODERS.get(coder.mode)
    if previous is not None and not replace:
        raise ValueError(f"mode {coder.mode.name} already has a coder ({type(previous).__name__})")
    _CODERS[coder.mode] = coder
    return previous


def coder_for(mode: Mode | int) -> Coder:
    """The coder registered for ``mode``; InvalidInputError when there is none."""
    coder = _CODERS.get(Mode(mode)) if mode in set(Mode) else None
    if coder is None:
        known = ", ".join(m.name.lower() for m in sorted(_CODERS))
        raise InvalidInputError(f"no coder for mode {mode!r} (coders are registered for {known})")
    return coder

