"""The placeholder image that replaces encrypted pixels: small, viewable, reads "ENCRYPTED".

Why it looks the way it does:

* Same pixel format as the native rendition of the original (Samples per Pixel, Bits
  Allocated/Stored, High Bit, Pixel Representation, Number of Frames), so the instance stays a
  valid object of its SOP class: CT keeps 16-bit MONOCHROME2, a segmentation stays 1-bit, the
  per-frame functional groups still match the frame count.
* Photometric interpretation is what a decompressed copy would have: JPEG/J2K YBR originals are
  RGB once decoded, so the placeholder is RGB; native YBR_FULL/YBR_FULL_422 and palette colour
  stay (palette draws with the darkest and brightest entries of the original LUT, which is kept).
* Ink values sit at the ends of the stored range (MONOCHROME1 inverted), so any linear window
  shows white text on black. A window is written only when the original VOI would render both
  values alike.
* Drawn with a built-in 5x7 bitmap font: deterministic bytes, no imaging dependency.
* One frame is written per original frame (the per-frame functional groups must keep
  matching), all alike; a multi-frame placeholder is therefore RLE Lossless compressed, the
  encoding every viewer reads, so the encrypted file is about the size of its payload and not
  that plus frames x an uncompressed placeholder (a 225 kB multi-frame object grew to 2.7 MB).
  A single frame stays Explicit VR Little Endian (it is 32 kB at most).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless
from pydicom.valuerep import format_number_as_ds

from dicomcrypt.dicom.attributes import OVERLAY_GROUPS
from dicomcrypt.dicom.encoding import convert_to_little_endian, set_transfer_syntax
from dicomcrypt.dicom.output_syntax import encode_lossless
from dicomcrypt.dicom.pixels import PixelFormat, write_frames

__all__ = [
    "PLACEHOLDER_LONG_SIDE",
    "PLACEHOLDER_TEXT",
    "apply_placeholder",
    "placeholder_transfer_syntax",
    "placeholder_mask",
    "placeholder_size",
]

PLACEHOLDER_TEXT = "ENCRYPTED"
PLACEHOLDER_LONG_SIDE = 128
_SHORT_SIDE_MIN = 64  # the text is 53 px wide at scale 1; keeps it legible in any aspect

# 5x7 glyphs, just the letters of PLACEHOLDER_TEXT.
_GLYPHS: dict[str, tuple[str, ...]] = {
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "N": ("#...#", "##..#", "##..#", "#.#.#", "#..##", "#..##", "#...#"),
    "C": (".####", "#....", "#....", "#....", "#....", "#....", ".####"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
}

# Attributes that describe the original pixels and would be false (or show the original).
_REMOVE = (
    0x00280106,  # Smallest Image Pixel Value
    0x00280107,  # Largest Image Pixel Value
    0x00280108,  # Smallest Pixel Value in Series
    0x00280109,  # Largest Pixel Value in Series
    0x00880200,  # Icon Image Sequence: a thumbnail of the original
)


def apply_placeholder(ds: Dataset, fmt: PixelFormat) -> None:
    """Replace the pixels of ``ds`` (described by ``fmt``) by the placeholder, in place.

    Everything outside the Image Pixel module is left as it was, except attributes that would
    now be false (smallest/largest pixel values, icon image, overlays). The transfer syntax
    becomes Explicit VR Little Endian, or RLE Lossless for several frames (when the pixels
    allow it: not float, not 1-bit).
    """
    convert_to_little_endian(ds)  # before reading LUTs: pydicom assumes native byte order
    rows, columns = placeholder_size(fmt.rows, fmt.columns)
    mask = _shared_mask(rows, columns)
    background, ink, window = _ink(ds, fmt)

    frame = np.where(mask[..., None], ink, background).astype(fmt.dtype)
    frames = np.broadcast_to(frame, (fmt.frames, rows, columns, fmt.samples_per_pixel))

    for tag in _REMOVE:
        if tag in ds._dict:
            del ds[tag]
    for tag in [t for t in ds._dict if (t >> 16) in OVERLAY_GROUPS]:
        del ds[tag]
    if window is not None:
        _set_window(ds, *window)

    write_frames(ds, frames, dataclasses.replace(fmt, rows=rows, columns=columns))
    set_transfer_syntax(ds, ExplicitVRLittleEndian)
    if fmt.frames > 1:
        encode_lossless(ds, frames, RLELossless)


def placeholder_transfer_syntax(number_of_frames: object) -> UID:
    """The transfer syntax :func:`apply_placeholder` writes for an original of that many frames
    (Number of Frames as the header holds it), for a sender to propose before encrypting. RLE is
    what it aims at; pixels RLE cannot hold fall back to Explicit VR Little Endian, which a
    sender always proposes too."""
    try:
        frames = int(str(number_of_frames or 1))
    except ValueError:
        frames = 1
    return RLELossless if frames > 1 else ExplicitVRLittleEndian


def placeholder_size(rows: int, columns: int) -> tuple[int, int]:
    """(rows, columns): long side 128 (64 for originals up to 128 px, so the placeholder never
    outgrows them), aspect kept within 2:1, both even (for 4:2:2).

    Only the aspect ratio and whether the image is small show through; the real geometry is
    inside the encrypted payload.
    """
    rows, columns = max(1, int(rows)), max(1, int(columns))
    if max(rows, columns) <= PLACEHOLDER_LONG_SIDE:
        return _SHORT_SIDE_MIN, _SHORT_SIDE_MIN
    long_side = PLACEHOLDER_LONG_SIDE
    short = round(long_side * min(rows, columns) / max(rows, columns))
    short = max(_SHORT_SIDE_MIN, short + short % 2)
    return (long_side, short) if rows >= columns else (short, long_side)


@functools.lru_cache(maxsize=64)
def _shared_mask(rows: int, columns: int) -> np.ndarray:
    """:func:`placeholder_mask`, drawn once per shape and read-only: every instance of a series
    has the same shape, and drawing it was a share of each encryption (issue 14). The shapes are
    few (long side 128 or 64, even short side), so 64 entries hold every one a site sees."""
    mask = placeholder_mask(rows, columns)
    mask.flags.writeable = False
    return mask


def placeholder_mask(rows: int, columns: int, text: str = PLACEHOLDER_TEXT) -> np.ndarray:
    """Boolean ``(rows, columns)`` image: True where ink goes (a border and the text)."""
    mask = np.zeros((rows, columns), dtype=bool)
    mask[[0, -1], :] = True
    mask[:, [0, -1]] = True
    glyph = _render(text)
    scale = max(1, min((columns - 10) // glyph.shape[1], (rows - 10) // glyph.shape[0]))
    glyph = np.kron(glyph, np.ones((scale, scale), dtype=bool)).astype(bool)
    height, width = glyph.shape
    if height > rows - 4 or width > columns - 4:
        return mask  # too small for text: the border alone marks it
    top, left = (rows - height) // 2, (columns - width) // 2
    mask[top : top + height, left : left + width] |= glyph
    return mask


def _render(text: str) -> np.ndarray:
    """The text at scale 1: 7 rows, 6 px per letter minus the last gap."""
    columns = []
    for i, char in enumerate(text):
        rows = _GLYPHS[char]
        glyph = np.array([[c == "#" for c in row] for row in rows], dtype=bool)
        if i:
            columns.append(np.zeros((7, 1), dtype=bool))
        columns.append(glyph)
    return np.hstack(columns)


# ----------------------------------------------------------------------------- ink values


def _ink(ds: Dataset, fmt: PixelFormat) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
    """(background, ink, window-or-None): per-sample values that render dark and light."""
    samples = fmt.samples_per_pixel
    if fmt.is_float:
        low, high = _float_range(ds)
        return np.full(samples, low), np.full(samples, high), None
    if fmt.is_single_bit:
        pair = (1, 0) if fmt.photometric_interpretation == "MONOCHROME1" else (0, 1)
        return np.full(samples, pair[0]), np.full(samples, pair[1]), None

    low, high = fmt.stored_range
    pi = fmt.photometric_interpretation
    if pi == "PALETTE COLOR":
        dark, light = _palette_extremes(ds, low, high)
        return np.array([dark]), np.array([light]), None
    if pi == "RGB" or samples == 3 and not pi.startswith("YBR"):
        return np.full(samples, max(low, 0)), np.full(samples, high), None
    if pi.startswith("YBR"):
        mid = 1 << (fmt.bits_stored - 1)
        if pi.startswith("YBR_PARTIAL"):
            scale = (high + 1) / 256
            y_dark, y_light = round(16 * scale), round(235 * scale)
        else:
            y_dark, y_light = 0, high
        return np.array([y_dark, mid, mid]), np.array([y_light, mid, mid]), None

    # Greyscale (MONOCHROME1/2 and anything else with one sample).
    dark, light = (high, low) if pi == "MONOCHROME1" else (low, high)
    light = _avoid_padding(ds, light, toward=dark)
    window = None if _visible(ds, dark, light) else _window_for(ds, low, high)
    return np.full(samples, dark), np.full(samples, light), window


def _float_range(ds: Dataset) -> tuple[float, float]:
    """Float pixels: just outside the original window if there is one, else 0 and 1."""
    try:
        center = float(_first(ds.get("WindowCenter")))
        width = float(_first(ds.get("WindowWidth")))
        return center - width, center + width
    except (TypeError, ValueError):
        return 0.0, 1.0


def _first(value: Any) -> Any:
    """First value of a possibly multi-valued element value."""
    if value is None:
        raise TypeError("absent")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return value[0]
    return value


def _avoid_padding(ds: Dataset, value: int, *, toward: int) -> int:
    """Move the text value one step if viewers would treat it as padding (not drawn)."""
    padding = ds.get("PixelPaddingValue", None)
    if padding is None:
        return value
    limit = ds.get("PixelPaddingRangeLimit", padding)
    low, high = sorted((int(padding), int(limit)))
    if low <= value <= high:
        step = 1 if toward > value else -1
        candidate = (high + 1) if step > 0 else (low - 1)
        return candidate if (candidate - toward) * step < 0 else value
    return value


def _visible(ds: Dataset, dark: int, light: int) -> bool:
    """True unless the original modality + VOI transform renders both values the same."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        values = np.array([dark, light], dtype=np.int64)
        shown = apply_voi_lut(apply_modality_lut(values, ds), ds)
        return bool(shown[0] != shown[1])
    except Exception:  # odd LUTs: pydicom cannot say, the extremes are the best bet
        return True


def _window_for(ds: Dataset, low: int, high: int) -> tuple[float, float]:
    """A linear window spanning the stored range after the modality transform."""
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return (ends[0] + ends[1]) / 2, max(1.0, ends[1] - ends[0] + 1)


def _set_window(ds: Dataset, center: float, width: float) -> None:
    """One window that shows the placeholder; the VOI it replaces is in the snapshot."""
    for keyword in ("VOILUTSequence", "WindowCenterWidthExplanation", "VOILUTFunction"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.WindowCenter = format_number_as_ds(center)
    ds.WindowWidth = format_number_as_ds(width)


def _palette_extremes(ds: Dataset, low: int, high: int) -> tuple[int, int]:
    """Stored values whose palette colours are darkest and brightest."""
    from pydicom.pixels import apply_color_lut

    try:
        descriptor = ds.RedPaletteColorLookupTableDescriptor
        entries = int(descriptor[0]) or 65536
        first = int(descriptor[1])
        start, stop = max(low, first), min(high, first + entries - 1)
        if start > stop:
            return low, high
        indices = np.arange(start, stop + 1)
        colours = apply_color_lut(indices, ds).astype(np.float64)
        luminance = colours[:, :3] @ np.array([0.299, 0.587, 0.114])
        dark, light = int(indices[luminance.argmin()]), int(indices[luminance.argmax()])
        return (dark, light) if dark != light else (low, high)
    except Exception:  # a LUT pydicom cannot apply: fall back on the range ends
        return low, high
