"""How much a received payload may make us allocate and compute: checked before anything is.

A valid envelope for a public recipient needs no secret: anyone who knows a node's
``dcrecip1...`` string can seal any payload for it. So the payload's metadata and sections are
attacker-controlled input, and a few kilobytes of it may *declare* gigabytes of pixels or hours
of decoding. Every declared size is checked against the others (docs/format.md) and against a
:class:`DecodeLimits` before the memory is allocated or the decoder runs; a payload over a limit
is refused with :class:`~dicomcrypt.errors.PayloadFormatError` (0xC003 on the wire) naming what
it declared and the limit.

The defaults pass every legitimate file we know of (the largest model decode among them: a
120-frame 480 x 640 RGB cine, 37 million pixels; a 4096 x 3328 mammogram; 1955 x 1841
radiographs; a few hundred CT slices in the standard mode) and keep one instance's decoding
within about a gigabyte of pixels and, on a slow two-core machine, 40 to 90 s of model
decoding. Sites tune the two that matter (``serve`` and ``decrypt`` ``--max-image-mb`` and
``--max-model-megapixels``; ``ReceivePolicy(limits=...)``, ``StorageHook(limits=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomcrypt.errors import InvalidInputError

__all__ = ["DEFAULT_LIMITS", "MEBIBYTE", "MEGAPIXEL", "DecodeLimits"]

MEBIBYTE = 2**20
MEGAPIXEL = 10**6


@dataclass(frozen=True)
class DecodeLimits:
    """Ceilings for one instance's decoding (see the module docstring).

    ``max_frame_pixels``: rows x columns of one frame (default 8192 x 8192).
    ``max_frames``: frames of one instance.
    ``max_pixel_bytes``: the restored pixel array, frames x rows x columns x samples x bytes per
    sample; this also bounds every decompressed section, whose sizes follow from it.
    ``max_model_pixels``: pixels the autoencoder's decoder may produce for one instance
    (frames x rows x columns): the decode work ceiling against CPU bombs (the fixed-point
    decoder runs at roughly half a megapixel per second per core; 40 million fits the largest
    real multi-frame object we test with).
    ``max_metadata_bytes`` and ``max_metadata_depth``: the payload's JSON metadata.
    """

    max_frame_pixels: int = 8192 * 8192
    max_frames: int = 10_000
    max_pixel_bytes: int = 1024 * MEBIBYTE
    max_model_pixels: int = 40 * MEGAPIXEL
    max_metadata_bytes: int = 1 * MEBIBYTE
    max_metadata_depth: int = 8

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(f"decode limit {name} must be a positive integer, not {value!r}")

    @classmethod
    def from_options(cls, *, max_image_mb: int | None = None, max_model_megapixels: int | None = None) -> DecodeLimits:
        """The limits a site tunes, in the units of the ``--max-image-mb`` and
        ``--max-model-megapixels`` options; None keeps the default."""
        defaults = cls()
        return cls(
            max_pixel_bytes=defaults.max_pixel_bytes if max_image_mb is None else max_image_mb * MEBIBYTE,
            max_model_pixels=(
                defaults.max_model_pixels if max_model_megapixels is None else max_model_megapixels * MEGAPIXEL
            ),
        )


DEFAULT_LIMITS = DecodeLimits()
DEFAULT_IMAGE_MB = DEFAULT_LIMITS.max_pixel_bytes // MEBIBYTE
DEFAULT_MODEL_MEGAPIXELS = DEFAULT_LIMITS.max_model_pixels // MEGAPIXEL
