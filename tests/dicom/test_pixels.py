"""read_frames / write_frames: exact round trips over every real test image, and the errors."""

from __future__ import annotations

import copy
import dataclasses
import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_fragmented_frames
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from dicomcrypt.dicom import (
    PixelFormat,
    has_pixel_data,
    read_frames,
    transfer_syntax,
    write_frames,
)
from dicomcrypt.errors import NoPixelDataError, PixelDecodeError, UnsupportedImageError
from helpers.corpus import image_files, read_quietly, sample

#: Images pydicom (3.0, with the pylibjpeg/pyjpegls/pillow plugins) cannot decode, and why.
#: read_frames must raise PixelDecodeError for them; the round trip is then skipped.
UNDECODABLE: dict[str, str] = {
    "JPEG-lossy.dcm": "12-bit JPEG extended with invalid SOS parameters: libjpeg error -1038, "
    "Pillow has no 12-bit JPEG; only GDCM reads it",
    "JPEG2000-embedded-sequence-delimiter.dcm": "4 codestream bytes overwritten by a Sequence "
    "Delimiter (a parser test): openjpeg fails to read the J2K header",
    "MR_truncated.dcm": "native Pixel Data is 8130 bytes, 64x64x16-bit needs 8192",
    "badVR.dcm": "Number of Frames is '1A'",
    "meta_missing_tsyntax.dcm": "Pixel Data without an Image Pixel module (no Bits Allocated)",
    "nested_priv_SQ.dcm": "Pixel Data without an Image Pixel module (no Bits Allocated)",
}
# Not in the image list at all: pydicom reads these as datasets without Pixel Data.
UNREADABLE: dict[str, str] = {
    "emri_small_jpeg_2k_lossless_too_short.dcm": "the last fragment runs past the end of the "
    "file; pydicom returns an empty dataset (with a warning)",
}
#: pydicom cannot write the original dataset back (so the file round trip is in memory only).
UNWRITABLE: dict[str, str] = {
    "SC_rgb_jpeg.dcm": "explicit VR transfer syntax but implicit VR body: raw elements have no "
    "VR and pydicom's writer fails on the untouched original too",
}
#: Native little-endian originals whose rewritten Pixel Data bytes differ, and why.
NATIVE_BYTES_DIFFER: dict[str, str] = {
    "MR_small_padded.dcm": "128 bytes of excess padding after the frame are dropped",
    "mlut_18.dcm": "12-bit signed data stored without sign extension; pydicom sign-extends",
}
#: Slow to decode (a third of a second or more): still run by default, deselected by -m "not slow".
SLOW = {
    "RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG1_UNCI.dcm", "RG1_UNCR.dcm", "RG3_J2KR.dcm", "RG3_J2KI.dcm",
    "MR2_J2KR.dcm", "color3d_jpeg_baseline.dcm", "examples_ybr_color.dcm",
}
#: Long encapsulated cines are cut to their first frames (same codec path, a fraction of the time).
MAX_ENCAPSULATED_FRAMES = 16


# rtdose*.dcm carries a UID pydicom warns about (a property of the test file, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")


def _first_frames(ds: Dataset, count: int = MAX_ENCAPSULATED_FRAMES) -> Dataset:
    """``ds`` with only its first ``count`` frames when it is a longer encapsulated cine."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except ValueError:
        return ds
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if frames <= count or tsyntax is None or not tsyntax.is_encapsulated:
        return ds
    kept = []
    for frame in generate_fragmented_frames(ds.PixelData, number_of_frames=frames):
        kept.append(b"".join(frame))
        if len(kept) == count:
            break
    ds.PixelData = encapsulate(kept)
    ds.NumberOfFrames = count
    return ds


def _quiet_read_frames(ds: Dataset) -> tuple[np.ndarray, PixelFormat]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_frames(ds)


def _id(path: Path) -> str:
    return path.name if path.parent.name in ("test_files", "data") else f"{path.parent.name}/{path.name}"


_PARAMS = [
    pytest.param(p, id=_id(p), marks=[pytest.mark.slow] if p.name in SLOW else [])
    for p in image_files()
]


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", _PARAMS)
def test_read_write_read_is_exact(path: Path) -> None:
    """Every decodable image: read -> write native -> (save, load) -> read gives the same array."""
    original = _first_frames(read_quietly(path))
    try:
        frames, fmt = _quiet_read_frames(original)
    except PixelDecodeError as exc:
        assert path.name in UNDECODABLE, f"unexpected decode failure: {exc}"
        assert exc.__cause__ is not None
        pytest.skip(f"pydicom cannot decode: {UNDECODABLE[path.name]}")

    assert frames.ndim == 4 and frames.flags.c_contiguous and frames.dtype.isnative
    assert frames.shape == (fmt.frames, fmt.rows, fmt.columns, fmt.samples_per_pixel)
    assert frames.dtype == fmt.dtype

    ds = copy.deepcopy(original)
    write_frames(ds, frames, fmt)
    again, fmt_again = _quiet_read_frames(ds)
    assert again.dtype == frames.dtype
    np.testing.assert_array_equal(again, frames)

    if path.name not in UNWRITABLE:
        loaded = pydicom.dcmread(io.BytesIO(_to_bytes(ds)), force=True)
        written = transfer_syntax(loaded)
        assert written is not None and written.is_little_endian and not written.is_encapsulated
        again, fmt_again = _quiet_read_frames(loaded)
        assert again.dtype == frames.dtype
        np.testing.assert_array_equal(again, frames)

    # The format survives, except that the original is now what was written.
    expected = dataclasses.replace(
        fmt, original_photometric_interpretation=str(ds.PhotometricInterpretation)
    )
    assert fmt_again == expected

    tsyntax = original.file_meta.get("TransferSyntaxUID") if hasattr(original, "file_meta") else None
    native_le = tsyntax is not None and tsyntax.is_little_endian and not tsyntax.is_encapsulated
    if native_le and path.name not in NATIVE_BYTES_DIFFER:
        assert ds[0x7FE00010].value == original[0x7FE00010].value
        assert ds.file_meta.TransferSyntaxUID == tsyntax  # native syntaxes are kept


def test_corpus_is_there() -> None:
    """Guard against an empty parametrisation hiding every test above."""
    names = {p.name for p in image_files()}
    assert len(names) > 60
    assert {"CT_small.dcm", "emri_small.dcm", "liver_1frame.dcm"} <= names
    assert not set(UNREADABLE) & names


def test_colour_policy() -> None:
    """Native YBR stays YBR (exact); lossy JPEG YBR is returned as RGB; J2K RCT as RGB."""
    _, fmt = _quiet_read_frames(read_quietly(sample("SC_ybr_full_422_uncompressed.dcm")))
    assert (fmt.photometric_interpretation, fmt.original_photometric_interpretation) == (
        "YBR_FULL",
        "YBR_FULL_422",
    )
    frames, fmt = _quiet_read_frames(read_quietly(sample("examples_ybr_color.dcm")))
    assert fmt.photometric_interpretation == "RGB"
    assert fmt.original_photometric_interpretation == "YBR_FULL_422"
    assert frames.shape == (30, 240, 320, 3)
    reference = read_quietly(sample("examples_ybr_color.dcm")).pixel_array  # pydicom's default decode
    np.testing.assert_array_equal(frames, reference)
    _, fmt = _quiet_read_frames(read_quietly(sample("US1_J2KR.dcm")))
    assert (fmt.photometric_interpretation, fmt.original_photometric_interpretation) == (
        "RGB",
        "YBR_RCT",
    )


def test_ybr_422_native_is_written_back_subsampled() -> None:
    """A native 4:2:2 original gets its exact bytes back (pydicom expanded them on read)."""
    original = read_quietly(sample("SC_ybr_full_422_uncompressed.dcm"))
    frames, fmt = _quiet_read_frames(original)
    ds = copy.deepcopy(original)
    write_frames(ds, frames, fmt)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert ds.PixelData == original.PixelData
    assert len(ds.PixelData) == 100 * 100 * 2


def test_ybr_422_with_distinct_chroma_stays_full() -> None:
    """Chroma that 4:2:2 cannot hold (e.g. a lossy decode) is written as YBR_FULL, losing nothing."""
    original = read_quietly(sample("SC_ybr_full_422_uncompressed.dcm"))
    frames, fmt = _quiet_read_frames(original)
    frames = frames.copy()
    frames[0, 0, 1, 1] ^= 1
    ds = copy.deepcopy(original)
    write_frames(ds, frames, fmt)
    assert ds.PhotometricInterpretation == "YBR_FULL"
    np.testing.assert_array_equal(_quiet_read_frames(ds)[0], frames)


def test_planar_configuration_is_interleaved_in_the_array_and_kept_on_write() -> None:
    planar = read_quietly(sample("color-pl.dcm"))
    pixel = read_quietly(sample("color-px.dcm"))
    a, fmt_a = _quiet_read_frames(planar)
    b, fmt_b = _quiet_read_frames(pixel)
    np.testing.assert_array_equal(a, b)
    assert (fmt_a.planar_configuration, fmt_b.planar_configuration) == (1, 0)
    ds = copy.deepcopy(planar)
    write_frames(ds, a, fmt_a)
    assert ds.PlanarConfiguration == 1 and ds.PixelData == planar.PixelData


def test_big_endian_becomes_explicit_little_endian_with_swapped_luts() -> None:
    """BE palette: pixels and LUT data end up exactly as in the LE copy of the same image."""
    big = read_quietly(sample("OBXXXX1A_expb.dcm"))
    little = read_quietly(sample("OBXXXX1A.dcm"))
    frames, fmt = _quiet_read_frames(big)
    write_frames(big, frames, fmt)
    assert big.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert big.PixelData == little.PixelData
    for keyword in ("RedPaletteColorLookupTableData", "BluePaletteColorLookupTableData"):
        assert big[keyword].value == little[keyword].value
    loaded = pydicom.dcmread(io.BytesIO(_to_bytes(big)))
    np.testing.assert_array_equal(
        pydicom.pixels.apply_color_lut(_quiet_read_frames(loaded)[0][0, ..., 0], loaded),
        pydicom.pixels.apply_color_lut(little.pixel_array, little),
    )


def test_single_bit_is_packed_and_flagged() -> None:
    original = read_quietly(sample("liver.dcm"))
    frames, fmt = _quiet_read_frames(original)
    assert fmt.is_single_bit and fmt.bits_allocated == 1 and not fmt.model_ready
    assert frames.shape == (3, 512, 512, 1) and set(np.unique(frames)) <= {0, 1}
    ds = copy.deepcopy(original)
    write_frames(ds, frames, fmt)
    assert ds.PixelData == original.PixelData


def test_format_flags() -> None:
    _, ct = _quiet_read_frames(read_quietly(sample("CT_small.dcm")))
    assert ct.model_ready and ct.pixel_representation == 1 and ct.bits_stored == 16
    _, palette = _quiet_read_frames(read_quietly(sample("examples_palette.dcm")))
    assert palette.is_palette and not palette.model_ready
    _, dose = _quiet_read_frames(read_quietly(sample("rtdose.dcm")))
    assert dose.bits_allocated == 32 and dose.frames == 15 and not dose.model_ready
    _, padded = _quiet_read_frames(read_quietly(sample("693_UNCR.dcm")))
    assert padded.padding_value == -2000
    _, rgb = _quiet_read_frames(read_quietly(sample("US1_UNCR.dcm")))
    assert rgb.model_ready and rgb.samples_per_pixel == 3


def test_pixel_format_is_json_friendly() -> None:
    """The pipeline carries it as dataclasses.asdict() in JSON and rebuilds it with **."""
    import json

    _, fmt = _quiet_read_frames(read_quietly(sample("SC_ybr_full_422_uncompressed.dcm")))
    assert PixelFormat(**json.loads(json.dumps(dataclasses.asdict(fmt)))) == fmt


def test_float_pixel_data_round_trip() -> None:
    """Float Pixel Data (e.g. parametric maps) comes back as float32 and is written back."""
    ds = read_quietly(sample("CT_small.dcm"))
    values = np.linspace(-1.5, 2.5, 128 * 128, dtype="<f4").reshape(128, 128)
    del ds.PixelData
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.tobytes()
    assert has_pixel_data(ds)
    frames, fmt = _quiet_read_frames(ds)
    assert fmt.is_float and frames.dtype == np.float32 and not fmt.model_ready
    np.testing.assert_array_equal(frames[0, ..., 0], values)
    write_frames(ds, frames, fmt)
    assert "PixelData" not in ds and ds.FloatPixelData == values.tobytes()
    assert "BitsStored" not in ds


def test_number_of_frames_only_when_needed() -> None:
    ds = read_quietly(sample("CT_small.dcm"))
    frames, fmt = _quiet_read_frames(ds)
    write_frames(ds, frames, fmt)
    assert "NumberOfFrames" not in ds
    write_frames(ds, np.concatenate([frames, frames]), fmt)
    assert ds.NumberOfFrames == 2
    assert _quiet_read_frames(ds)[0].shape[0] == 2


def test_write_refuses_values_that_do_not_fit() -> None:
    ds = read_quietly(sample("CT_small.dcm"))
    frames, fmt = _quiet_read_frames(ds)
    with pytest.raises(ValueError, match="do not fit"):
        write_frames(ds, frames.astype(np.int32) + 40000, fmt)
    with pytest.raises(ValueError):
        write_frames(ds, frames[0], fmt)


def test_implicit_syntax_is_kept() -> None:
    ds = read_quietly(sample("MR_small_implicit.dcm"))
    frames, fmt = _quiet_read_frames(ds)
    write_frames(ds, frames, fmt)
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["test-SR.dcm", "rtplan.dcm", "rtstruct.dcm", "waveform_ecg.dcm"])
def test_no_pixel_data(name: str) -> None:
    ds = read_quietly(sample(name))
    assert not has_pixel_data(ds)
    with pytest.raises(NoPixelDataError):
        read_frames(ds)


def test_truncated_native_pixel_data() -> None:
    with pytest.raises(PixelDecodeError, match=r"frame 1 of 1 .*Explicit VR Little Endian") as info:
        _quiet_read_frames(read_quietly(sample("MR_truncated.dcm")))
    assert isinstance(info.value.__cause__, ValueError)


def test_corrupt_frame_is_named() -> None:
    """A multi-frame J2K with frame 4 cut short: the error names frame 4 and the syntax."""
    ds = read_quietly(sample("emri_small_jpeg_2k_lossless.dcm"))
    fragments = [
        b"".join(frame) for frame in generate_fragmented_frames(ds.PixelData, number_of_frames=10)
    ]
    fragments[3] = fragments[3][: len(fragments[3]) // 3]
    ds.PixelData = encapsulate(fragments)
    with pytest.raises(PixelDecodeError, match=r"frame 4 of 10 .*JPEG 2000") as info:
        _quiet_read_frames(ds)
    assert info.value.__cause__ is not None


def test_corrupt_jpeg_file() -> None:
    with pytest.raises(PixelDecodeError, match="JPEG Extended"):
        _quiet_read_frames(read_quietly(sample("JPEG-lossy.dcm")))


def test_missing_frames_are_an_error() -> None:
    ds = read_quietly(sample("emri_small_RLE.dcm"))
    ds.NumberOfFrames = 11
    with pytest.raises(PixelDecodeError):
        _quiet_read_frames(ds)


def test_unknown_transfer_syntax_is_unsupported() -> None:
    ds = read_quietly(sample("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder
    with pytest.raises(UnsupportedImageError, match="MPEG2"):
        read_frames(ds)


def test_no_file_meta_infers_the_syntax() -> None:
    """Files without file meta (read with force) decode with the syntax they were read in."""
    ds = read_quietly(sample("OT-PAL-8-face.dcm"))
    assert not ds.file_meta.get("TransferSyntaxUID")
    frames, fmt = _quiet_read_frames(ds)
    assert fmt.is_palette and frames.shape == (1, 480, 640, 1)


def test_rle_decoded_frames_are_identical_to_native() -> None:
    native, _ = _quiet_read_frames(read_quietly(sample("emri_small.dcm")))
    rle, fmt = _quiet_read_frames(read_quietly(sample("emri_small_RLE.dcm")))
    np.testing.assert_array_equal(native, rle)
    ds = read_quietly(sample("emri_small_RLE.dcm"))
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    write_frames(ds, rle, fmt)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert "ExtendedOffsetTable" not in ds


def test_dataset_without_file_meta_gets_one_when_needed() -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 2, 2, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    fmt = PixelFormat(2, 2, 1, 1, 8, 8, 7, 0, "MONOCHROME2", "MONOCHROME2")
    write_frames(ds, np.arange(4, dtype=np.uint8).reshape(1, 2, 2, 1), fmt)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PixelData == bytes([0, 1, 2, 3]) and ds["PixelData"].VR == "OB"
