"""Pixels <-> arrays: decode any transfer syntax pydicom can read, write native little endian.

``read_frames`` returns every frame as one ``(F, H, W, C)`` integer array holding exactly the
values pydicom decodes, plus a :class:`PixelFormat` describing it. ``write_frames`` is its exact
inverse for native data: read -> write -> read gives identical arrays, and for native little
endian originals identical Pixel Data bytes.

Colour policy (why):

* Native RGB/YBR_FULL/YBR_FULL_422, RLE, JPEG lossless, JPEG-LS and JPEG 2000 are decoded with
  ``raw=True``: no colour conversion, so nothing is rounded and the round trip is exact.
  pydicom always removes the 4:2:2 subsampling, so the array of a YBR_FULL_422 original is
  YBR_FULL; ``write_frames`` subsamples it again when that loses nothing.
* JPEG baseline/extended (the lossy JPEG processes) store YCbCr because the codec itself
  transforms colour; there we return what pydicom gives by default: RGB.
* JPEG 2000 YBR_RCT/YBR_ICT come back as RGB from the codec (the MCT is part of J2K).
* Palette colour stays as stored indices (the lookup tables travel in the attribute snapshot).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import as_pixel_options, get_decoder, pack_bits
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit

from dicomcrypt.dicom.encoding import (
    convert_to_little_endian,
    is_big_endian,
    set_transfer_syntax,
    transfer_syntax,
)
from dicomcrypt.errors import NoPixelDataError, PixelDecodeError, UnsupportedImageError

__all__ = [
    "PIXEL_KEYWORDS",
    "PixelFormat",
    "has_pixel_data",
    "pixel_keyword",
    "read_frames",
    "write_frames",
]

#: The three elements that can hold an image's pixels, by tag.
PIXEL_KEYWORDS: dict[int, str] = {
    0x7FE00010: "PixelData",
    0x7FE00008: "FloatPixelData",
    0x7FE00009: "DoubleFloatPixelData",
}

# Lossy JPEG processes: YCbCr is the codec's own colour transform, so RGB is what it means.
_CODEC_COLOUR_TRANSFORM = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit})


@dataclasses.dataclass(frozen=True)
class PixelFormat:
    """How the array from :func:`read_frames` is laid out and what the original declared.

    Plain JSON-friendly fields so the pipeline can carry it in the payload
    (``dataclasses.asdict`` / ``PixelFormat(**d)``).
    """

    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    #: Photometric interpretation of the returned array (RGB after a JPEG colour transform,
    #: YBR_FULL for a native YBR_FULL_422 original).
    photometric_interpretation: str
    #: (0028,0004) as the original dataset declared it.
    original_photometric_interpretation: str
    #: (0028,0006) of the original (None when absent); the array is always interleaved.
    planar_configuration: int | None = None
    #: (0028,0120) Pixel Padding Value when present.
    padding_value: int | None = None
    is_palette: bool = False
    is_float: bool = False
    is_single_bit: bool = False

    @property
    def model_ready(self) -> bool:
        """True when the autoencoder can code these pixels (else the standard codec does)."""
        return (
            self.samples_per_pixel in (1, 3)
            and 8 <= self.bits_allocated <= 16
            and not self.is_float
            and not self.is_palette
            and not self.is_single_bit
        )

    @property
    def stored_range(self) -> tuple[int, int]:
        """Smallest and largest value Bits Stored and Pixel Representation allow (within the
        allocated bits): what a placeholder draws with and what a lossy decode is clipped to."""
        bits = max(1, min(self.bits_stored, self.bits_allocated))
        if self.pixel_representation:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the array (native byte order)."""
        if self.is_float:
            return np.dtype(np.float64 if self.bits_allocated == 64 else np.float32)
        if self.is_single_bit:
            return np.dtype(np.uint8)
        kind = "i" if self.pixel_representation else "u"
        return np.dtype(f"{kind}{max(1, self.bits_allocated // 8)}")


def has_pixel_data(ds: Dataset) -> bool:
    """True if ``ds`` holds an image (Pixel Data, Float or Double Float Pixel Data)."""
    return any(tag in ds._dict for tag in PIXEL_KEYWORDS)


def pixel_keyword(ds: Dataset) -> str:
    """Keyword of the pixel element ``ds`` holds; ``NoPixelDataError`` if none."""
    for tag, keyword in PIXEL_KEYWORDS.items():
        if tag in ds._dict:
            return keyword
    raise NoPixelDataError(f"instance {ds.get('SOPInstanceUID', '?')} has no Pixel Data")


def read_frames(ds: Dataset) -> tuple[np.ndarray, PixelFormat]:
    """All frames of ``ds`` as a C-contiguous ``(F, H, W, C)`` array and their format.

    Frames are decoded one at a time (memory stays at one frame plus the output). Raises
    ``NoPixelDataError`` without pixels, ``UnsupportedImageError`` when no installed plugin
    can decode the transfer syntax, ``PixelDecodeError`` (naming the frame) when a frame is
    corrupt or truncated.
    """
    keyword = pixel_keyword(ds)
    tsyntax = transfer_syntax(ds)
    if tsyntax is None:
        raise PixelDecodeError("the pixel data cannot be decoded: no Transfer Syntax UID")
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise UnsupportedImageError(
            f"no pixel data decoder for transfer syntax {tsyntax.name} ({tsyntax})"
        ) from exc
    if not decoder.is_available:
        raise UnsupportedImageError(
            f"no installed plugin can decode transfer syntax {tsyntax.name}; "
            f"missing: {'; '.join(decoder.missing_dependencies)}"
        )

    declared_frames = _declared_frames(ds)
    raw = tsyntax not in _CODEC_COLOUR_TRANSFORM
    out: np.ndarray | None = None
    props: dict[str, Any] = {}
    decoded = 0
    try:
        opts = as_pixel_options(ds)
        frames: Iterator[tuple[np.ndarray, dict[str, Any]]] = decoder.iter_array(
            ds, raw=raw, **opts
        )
        for arr, props in frames:
            if out is None:
                out = np.empty(
                    (declared_frames, *_frame_shape(arr)), dtype=_output_dtype(arr, ds, keyword)
                )
            out[decoded] = arr.reshape(out.shape[1:])
            decoded += 1
            if decoded == declared_frames:
                break
    except MemoryError:
        raise
    except Exception as exc:  # pydicom and its plugins raise many types; keep the cause
        raise _decode_error(decoded, declared_frames, tsyntax, exc) from exc
    if out is None or decoded < declared_frames:
        raise PixelDecodeError(
            f"pixel data ({tsyntax.name}) holds {decoded} frame(s) but Number of Frames is "
            f"{declared_frames}"
        )

    try:
        fmt = _pixel_format(ds, keyword, out, props)
    except (TypeError, ValueError) as exc:  # a damaged Image Pixel attribute (multi-valued, not a number)
        raise PixelDecodeError(f"the Image Pixel attributes cannot be read ({type(exc).__name__}: {exc})") from exc
    return out, fmt


def write_frames(ds: Dataset, frames: np.ndarray, fmt: PixelFormat) -> None:
    """Store ``frames`` ``(F, H, W, C)`` in ``ds`` as native little-endian pixel data.

    Rows, Columns, Number of Frames (kept or added only if present or F > 1), Samples per
    Pixel, Bits*, Pixel Representation, Photometric Interpretation and Planar Configuration
    are made consistent with the array and ``fmt``. The original planar configuration is
    honoured, a YBR_FULL array of a YBR_FULL_422 original is subsampled again when that is
    exact, 1-bit data is bit-packed. A compressed or big endian transfer syntax becomes
    Explicit VR Little Endian; other native ones are kept.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"frames must be (F, H, W, C), got shape {frames.shape}")
    n_frames, rows, columns, samples = (int(n) for n in frames.shape)
    if samples != fmt.samples_per_pixel:
        raise ValueError(f"frames have {samples} samples, the format says {fmt.samples_per_pixel}")

    keyword, value, photometric, planar = _encode_frames(frames, fmt)
    ds.Rows = rows
    ds.Columns = columns
    if n_frames > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = n_frames
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if planar is not None:
        ds.PlanarConfiguration = planar
    # One sample: (0028,0006) must be absent, but an original that has it keeps it (exact
    # inverse; the placeholder then has no error the original did not have).
    ds.BitsAllocated = fmt.bits_allocated
    if not fmt.is_float:
        ds.BitsStored = fmt.bits_stored
        ds.HighBit = fmt.high_bit
        ds.PixelRepresentation = fmt.pixel_representation
    _replace_pixel_element(ds, keyword, value, fmt.bits_allocated)


def _encode_frames(frames: np.ndarray, fmt: PixelFormat) -> tuple[str, bytes, str, int | None]:
    """(pixel keyword, even-length value, photometric interpretation, planar configuration)
    of ``frames`` as native little-endian pixel data."""
    photometric = fmt.photometric_interpretation
    planar = (fmt.planar_configuration or 0) if fmt.samples_per_pixel > 1 else None
    if fmt.is_float:
        keyword = "FloatPixelData" if fmt.bits_allocated == 32 else "DoubleFloatPixelData"
        data = np.ascontiguousarray(frames, dtype=fmt.dtype.newbyteorder("<"))
        if planar == 1:
            data = np.ascontiguousarray(data.transpose(0, 3, 1, 2))
        value = data.tobytes()
    elif fmt.is_single_bit:
        keyword = "PixelData"
        if frames.size and (frames.min() < 0 or frames.max() > 1):
            raise ValueError("1-bit pixel data must hold only 0 and 1")
        value = pack_bits(np.ascontiguousarray(frames, dtype=np.uint8).ravel(), pad=True)
    else:
        keyword = "PixelData"
        data = _checked_cast(frames, fmt.dtype.newbyteorder("<"))
        if _can_subsample(data, fmt):
            photometric, planar = "YBR_FULL_422", 0
            value = _subsample_422(data).tobytes()
        else:
            if planar == 1:
                data = data.transpose(0, 3, 1, 2)
            value = np.ascontiguousarray(data).tobytes()
    if len(value) % 2:
        value += b"\x00"
    return keyword, value, photometric, planar


def _replace_pixel_element(ds: Dataset, keyword: str, value: bytes, bits_allocated: int) -> None:
    """Make ``value`` the one pixel data element of ``ds`` (native transfer syntax, no other
    pixel keyword, no Extended Offset Table)."""
    tsyntax = transfer_syntax(ds)
    # The element itself too: a restore puts the original's native syntax back over a
    # placeholder that may be encapsulated (a multi-frame placeholder is RLE).
    was_encapsulated = (tsyntax is not None and tsyntax.is_encapsulated) or (
        0x7FE00010 in ds._dict and ds[0x7FE00010].is_undefined_length
    )
    _set_native_transfer_syntax(ds)
    for tag, other in PIXEL_KEYWORDS.items():
        if other != keyword and tag in ds._dict:
            del ds[tag]
    for tag in (0x7FE00001, 0x7FE00002):  # Extended Offset Table: encapsulated data only
        if tag in ds._dict:
            del ds[tag]
    if keyword == "PixelData":
        ds.add_new(0x7FE00010, _pixel_data_vr(ds, bits_allocated, was_encapsulated), value)
    elif keyword == "FloatPixelData":
        ds.add_new(0x7FE00008, "OF", value)
    else:
        ds.add_new(0x7FE00009, "OD", value)


# ----------------------------------------------------------------------------- internals


def _declared_frames(ds: Dataset) -> int:
    """(0028,0008) as an int (1 when absent); bad values are a decode error."""
    value = ds.get("NumberOfFrames", None)
    if value in (None, ""):
        return 1
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise PixelDecodeError(f"invalid Number of Frames {value!r}") from exc
    return max(1, n)


def _frame_shape(arr: np.ndarray) -> tuple[int, int, int]:
    """(H, W, C) of one decoded frame (pydicom gives (H, W) for one sample)."""
    if arr.ndim == 2:
        return int(arr.shape[0]), int(arr.shape[1]), 1
    return int(arr.shape[0]), int(arr.shape[1]), int(arr.shape[2])


def _output_dtype(arr: np.ndarray, ds: Dataset, keyword: str) -> np.dtype[Any]:
    """Native-order dtype of the output; at least as wide as the declared Bits Allocated.

    Some plugins size the container from the codestream precision (J2K/JPEG-LS 8-bit data
    in a 16-bit object); widening never changes a value and keeps the SOP class's bit depth.
    """
    dtype = arr.dtype.newbyteorder("=")
    if keyword != "PixelData" or dtype.kind not in "iu":
        return dtype
    declared = int(ds.get("BitsAllocated", 8) or 8)
    if declared > 8 * dtype.itemsize and declared in (16, 32, 64):
        return np.dtype(f"{dtype.kind}{declared // 8}")
    return dtype


def _decode_error(
    decoded: int, n_frames: int, tsyntax: UID, exc: BaseException
) -> PixelDecodeError:
    """A PixelDecodeError naming the failing frame (1-based) and the transfer syntax."""
    detail = " ".join(str(exc).split())
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return PixelDecodeError(
        f"frame {decoded + 1} of {n_frames} could not be decoded "
        f"({tsyntax.name}): {type(exc).__name__}: {detail}"
    )


def _pixel_format(
    ds: Dataset, keyword: str, out: np.ndarray, props: dict[str, Any]
) -> PixelFormat:
    """Describe ``out``; declared values from ``ds``, decoded ones from the plugin."""
    original_pi = str(ds.get("PhotometricInterpretation", "") or "")
    photometric = str(props.get("photometric_interpretation", original_pi) or original_pi)
    if photometric == "YBR_FULL_422":
        # pydicom always returns full resolution arrays: what they hold is YBR_FULL.
        photometric = "YBR_FULL"
    is_float = keyword != "PixelData"
    declared_ba = int(ds.get("BitsAllocated", 8 * out.dtype.itemsize) or 8)
    is_single_bit = not is_float and declared_ba == 1
    if is_float:
        bits_allocated = 8 * out.dtype.itemsize
    elif is_single_bit:
        bits_allocated = 1
    else:
        bits_allocated = 8 * out.dtype.itemsize
    bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
    bits_stored = min(bits_stored, bits_allocated)
    high_bit = int(ds.get("HighBit", None) if ds.get("HighBit", None) is not None else bits_stored - 1)
    planar = ds.get("PlanarConfiguration", None)
    padding = ds.get("PixelPaddingValue", None)
    return PixelFormat(
        rows=int(out.shape[1]),
        columns=int(out.shape[2]),
        frames=int(out.shape[0]),
        samples_per_pixel=int(out.shape[3]),
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        high_bit=high_bit,
        pixel_representation=1 if out.dtype.kind == "i" else 0,
        photometric_interpretation=photometric,
        original_photometric_interpretation=original_pi,
        planar_configuration=None if planar is None else int(planar),
        padding_value=None if padding is None else int(padding),
        is_palette=photometric == "PALETTE COLOR",
        is_float=is_float,
        is_single_bit=is_single_bit,
    )


def _checked_cast(frames: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """``frames`` as ``dtype``, refusing values the container cannot hold (no silent wrap)."""
    if frames.dtype == dtype:
        return frames
    if frames.dtype.kind not in "iub":
        raise ValueError(f"integer pixel data expected, got {frames.dtype}")
    if frames.size:
        info = np.iinfo(dtype)
        low, high = int(frames.min()), int(frames.max())
        if low < info.min or high > info.max:
            raise ValueError(f"pixel values {low}..{high} do not fit {dtype}")
    return frames.astype(dtype)


def _can_subsample(data: np.ndarray, fmt: PixelFormat) -> bool:
    """True when a YBR_FULL_422 original can be written as 4:2:2 again without loss."""
    if not (
        fmt.original_photometric_interpretation == "YBR_FULL_422"
        and fmt.photometric_interpretation == "YBR_FULL"
        and data.shape[3] == 3
        and data.shape[2] % 2 == 0
    ):
        return False
    chroma = data[..., 1:]
    return bool(np.array_equal(chroma[:, :, 0::2], chroma[:, :, 1::2]))


def _subsample_422(data: np.ndarray) -> np.ndarray:
    """YBR_FULL -> YBR_FULL_422 byte order: Y1 Y2 Cb Cr per pixel pair (PS3.3 C.7.6.3.1.2)."""
    f, h, w, _ = data.shape
    out = np.empty((f, h, w // 2, 4), dtype=data.dtype)
    out[..., 0] = data[:, :, 0::2, 0]
    out[..., 1] = data[:, :, 1::2, 0]
    out[..., 2] = data[:, :, 0::2, 1]
    out[..., 3] = data[:, :, 0::2, 2]
    return out


def _pixel_data_vr(ds: Dataset, bits_allocated: int, was_encapsulated: bool) -> str:
    """The VR for native Pixel Data: the existing native one is kept (exact restore, and the
    placeholder inherits the original's choice), else OW above 8 bits and OB otherwise."""
    current = ds[0x7FE00010].VR if 0x7FE00010 in ds._dict else None
    if not was_encapsulated and current in ("OB", "OW"):
        return str(current)
    return "OW" if bits_allocated > 8 else "OB"


def _set_native_transfer_syntax(ds: Dataset) -> None:
    """Compressed or big endian -> Explicit VR Little Endian; other native syntaxes stay."""
    if is_big_endian(ds):
        convert_to_little_endian(ds)
    tsyntax = transfer_syntax(ds)
    if tsyntax is not None and tsyntax.is_encapsulated:
        set_transfer_syntax(ds, ExplicitVRLittleEndian)
