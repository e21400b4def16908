"""The transfer syntax a restored instance is written in, and encoding it without loss.

Restored pixels come back as native arrays (:func:`dicomcrypt.dicom.write_frames`). Written
that way, a folder of JPEG 2000 or JPEG-LS originals grows several times on restore; so
``decrypt`` and ``serve`` write the original transfer syntax when it was lossless, or the one
chosen with ``--output-syntax``:

==================== =====================================================================
choice               written as
==================== =====================================================================
``original``         the original syntax when it is lossless and pydicom can encode it
                     (JPEG-LS lossless, JPEG 2000 lossless, RLE, Deflated, Explicit or
                     Implicit VR Little Endian); otherwise :data:`FALLBACK`
``jpeg-ls``          JPEG-LS Lossless
``jpeg2000-lossless`` JPEG 2000 Lossless
``explicit-little``  Explicit VR Little Endian, uncompressed
==================== =====================================================================

Why a fallback, and which: a lossy original syntax (JPEG baseline, lossy JPEG 2000) would
lose more on every restore, and a lossy restore (a derived image) must not be degraded again:
nothing is ever re-encoded lossily. A lossy original syntax and JPEG Lossless (no encoder is
installed) are written as JPEG-LS Lossless; a lossy restore follows the same rule, so its
pixels are stored exactly as decoded. Explicit VR Big Endian (retired) comes back as
Explicit VR Little Endian (the placeholder converted its values already). Pixels an encoder
cannot take (float, 1-bit, more than 16 bits, unusual colour) are written Explicit VR Little
Endian. Every encoding is decoded again and compared value by value with the restored
pixels; any difference or failure keeps the uncompressed pixels: never a silent change.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from dicomcrypt.dicom.encoding import set_transfer_syntax
from dicomcrypt.dicom.pixels import PIXEL_KEYWORDS, read_frames
from dicomcrypt.errors import InvalidInputError

__all__ = [
    "FALLBACK",
    "OUTPUT_SYNTAX_CHOICES",
    "OutputSyntax",
    "check_output_syntax",
    "choose_transfer_syntax",
    "encode_lossless",
]

OutputSyntax = Literal["original", "jpeg-ls", "jpeg2000-lossless", "explicit-little"]
OUTPUT_SYNTAX_CHOICES: tuple[OutputSyntax, ...] = ("original", "jpeg-ls", "jpeg2000-lossless", "explicit-little")

#: Written instead of an original syntax that is lossy, has no encoder, or is retired.
FALLBACK = JPEGLSLossless

_CHOSEN: dict[str, UID] = {
    "jpeg-ls": JPEGLSLossless,
    "jpeg2000-lossless": JPEG2000Lossless,
    "explicit-little": ExplicitVRLittleEndian,
}
_NATIVE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian})
_ENCODED = frozenset({JPEGLSLossless, JPEG2000Lossless, RLELossless})
# The Image Pixel module, what an encoder reads; of it, what a lossless encoder may rewrite
# (colour transform, interleaving) is copied back with the encoded pixels.
_ENCODER_SETS = ("PhotometricInterpretation", "PlanarConfiguration", "PixelData")
_IMAGE_PIXEL = (
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
)


def check_output_syntax(choice: str) -> OutputSyntax:
    """``choice`` if it is one of :data:`OUTPUT_SYNTAX_CHOICES`, else :class:`InvalidInputError`."""
    for known in OUTPUT_SYNTAX_CHOICES:
        if choice == known:
            return known
    raise InvalidInputError(f"output syntax {choice!r}: choose one of {', '.join(OUTPUT_SYNTAX_CHOICES)}")


def choose_transfer_syntax(choice: OutputSyntax, original: UID | None) -> UID:
    """The transfer syntax to write a restored instance in (before checking the pixels fit it)."""
    if choice != "original":
        return _CHOSEN[check_output_syntax(choice)]
    if original is None:
        return ExplicitVRLittleEndian
    original = UID(original)
    if original in _NATIVE or original in _ENCODED:
        return original
    return FALLBACK


def encode_lossless(ds: Dataset, frames: np.ndarray, target: UID) -> UID:
    """Write the native pixels of ``ds`` (``frames``: restored pixels, a placeholder) in
    ``target``, in place.

    Returns the transfer syntax ``ds`` ends up in: ``target``, or Explicit VR Little Endian when
    the pixels cannot be encoded in it without loss (the encoding is decoded and compared with
    ``frames`` value by value first).
    """
    if target in _NATIVE:
        return _native(ds, target)
    if 0x7FE00010 not in ds._dict or any(t in ds._dict for t in PIXEL_KEYWORDS if t != 0x7FE00010):
        return _native(ds, ExplicitVRLittleEndian)  # float pixels: no lossless encoder takes them
    trial = _encoded_trial(ds, frames, target)
    if trial is None:
        return _native(ds, ExplicitVRLittleEndian)
    for keyword in _ENCODER_SETS:
        if keyword in trial:
            ds[keyword] = trial[keyword]
        elif keyword in ds:
            del ds[keyword]
    set_transfer_syntax(ds, target)
    _set_encoding(ds, implicit=False)
    return target


def _native(ds: Dataset, tsyntax: UID) -> UID:
    """``ds`` (native pixels already) marked as written in the native ``tsyntax``."""
    set_transfer_syntax(ds, tsyntax)
    _set_encoding(ds, implicit=tsyntax == ImplicitVRLittleEndian)
    return tsyntax


def _set_encoding(ds: Dataset, *, implicit: bool) -> None:
    """Mark ``ds`` as encoded (``implicit``, little endian). Elements still raw from a read in
    another encoding are decoded first: pydicom writes raw elements of a data set "in its
    original encoding" as they are, and an Implicit VR element has no VR to write as Explicit."""
    if ds.original_encoding != (implicit, True):
        ds.walk(lambda _ds, _elem: None)
    ds.set_original_encoding(implicit, True, ds.original_character_set)


def _encoded_trial(ds: Dataset, frames: np.ndarray, target: UID) -> Dataset | None:
    """The Image Pixel module of ``ds`` encoded in ``target`` and decoding to ``frames`` exactly;
    None when no attempt does. RGB in JPEG 2000 is tried with its reversible colour transform
    first (Photometric Interpretation YBR_RCT, PS3.5 8.2.4): about half the size."""
    attempts: list[str | None] = [None]
    if target == JPEG2000Lossless and str(ds.get("PhotometricInterpretation", "")) == "RGB":
        attempts.insert(0, "YBR_RCT")
    for photometric in attempts:
        trial = _trial_dataset(ds)
        if photometric is not None:
            trial.PhotometricInterpretation = photometric  # pydicom applies the MCT for it
        try:
            trial.compress(target, generate_instance_uid=False)
            decoded, _ = read_frames(trial)
        except Exception:  # noqa: BLE001, S112 - an encoder that refuses these pixels: next attempt
            continue
        if decoded.shape == frames.shape and np.array_equal(decoded, frames):
            return trial
    return None


def _trial_dataset(ds: Dataset) -> Dataset:
    """The Image Pixel module and Pixel Data of ``ds`` alone: what the encoder needs and may
    change, so a refusal leaves ``ds`` as it was and nothing else is copied."""
    trial = Dataset()
    trial.file_meta = FileMetaDataset()
    trial.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    trial.set_original_encoding(False, True)
    for keyword in (*_IMAGE_PIXEL, "PixelData"):
        if keyword in ds:
            trial[keyword] = copy.copy(ds[keyword])  # the encoder sets values: never on ds's elements
    return trial
