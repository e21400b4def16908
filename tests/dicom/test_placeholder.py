"""The placeholder: viewable, reads ENCRYPTED, same pixel format, no new dciodvfy errors."""

from __future__ import annotations

import copy
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from dicomcrypt.dicom import (
    OVERLAY_GROUPS,
    SNAPSHOT_TAGS,
    apply_placeholder,
    placeholder_mask,
    placeholder_size,
    read_frames,
)
from helpers.corpus import read_quietly, sample
from helpers.dciodvfy import new_errors, require_tool

# name -> photometric interpretation the placeholder must have.
SAMPLES: dict[str, str] = {
    "693_UNCR.dcm": "MONOCHROME2",  # CT, 16-bit signed, padding -2000
    "MR_small.dcm": "MONOCHROME2",  # MR
    "US1_UNCR.dcm": "RGB",  # US, native RGB
    "examples_palette.dcm": "PALETTE COLOR",  # US palette
    "emri_small.dcm": "MONOCHROME2",  # Enhanced MR, 10 frames, functional groups
    "examples_ybr_color.dcm": "RGB",  # US multi-frame, JPEG baseline YBR_FULL_422
    "liver_1frame.dcm": "MONOCHROME2",  # SEG, 1-bit
    "liver.dcm": "MONOCHROME2",  # SEG, 1-bit, 3 frames
    "SC_ybr_full_422_uncompressed.dcm": "YBR_FULL_422",  # native 4:2:2
    "SC_ybr_full_uncompressed.dcm": "YBR_FULL",
    "OBXXXX1A_expb.dcm": "PALETTE COLOR",  # big endian palette
    "gdcm-US-ALOKA-16.dcm": "PALETTE COLOR",  # 16-bit segmented palette, implicit VR
    "color-pl.dcm": "RGB",  # planar configuration 1
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "MONOCHROME2",  # overlays
    "RG1_UNCR.dcm": "MONOCHROME1",  # CR, 1955 x 1841
    "vlut_04.dcm": "MONOCHROME2",  # VOI LUT Sequence
    "mlut_18.dcm": "MONOCHROME2",  # Modality LUT Sequence
    "rtdose.dcm": "MONOCHROME2",  # 32-bit, 15 frames
    "SC_rgb_32bit.dcm": "RGB",
    "US1_J2KR.dcm": "RGB",  # JPEG 2000 YBR_RCT
    "JPEG-LL.dcm": "MONOCHROME2",  # JPEG lossless
    "eCT_Supplemental.dcm": "MONOCHROME2",  # supplemental palette
    "CT_small.dcm": "MONOCHROME2",  # another vendor's private block at (0011,0010)
}


# rtdose*.dcm carries a UID pydicom warns about (a property of the test file, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")


def _placeholder(name: str) -> tuple[Dataset, Dataset, np.ndarray]:
    """(original, encrypted copy, original frames)."""
    original = read_quietly(sample(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames, fmt = read_frames(original)
        encrypted = copy.deepcopy(original)
        apply_placeholder(encrypted, fmt)
    return original, encrypted, frames


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Dataset, np.ndarray]]:
    """Each sample's placeholder instance written to disk, with its original and frames."""
    out: dict[str, tuple[Path, Dataset, np.ndarray]] = {}
    folder = tmp_path_factory.mktemp("placeholders")
    for name in SAMPLES:
        original, encrypted, frames = _placeholder(name)
        path = folder / name
        pydicom.dcmwrite(path, encrypted, enforce_file_format=True)
        out[name] = (path, original, frames)
    return out


@pytest.mark.parametrize("name", list(SAMPLES))
def test_same_pixel_format_small_and_readable(
    name: str, written: dict[str, tuple[Path, Dataset, np.ndarray]]
) -> None:
    path, original, frames = written[name]
    ds = pydicom.dcmread(path)
    # several frames: RLE Lossless where the encoder takes the pixels (not 1-bit)
    syntaxes = (ExplicitVRLittleEndian,) if frames.shape[0] == 1 else (RLELossless, ExplicitVRLittleEndian)
    assert ds.file_meta.TransferSyntaxUID in syntaxes
    assert ds.SOPClassUID == original.SOPClassUID
    assert ds.SOPInstanceUID == original.SOPInstanceUID
    placeholder, fmt = read_frames(ds)
    assert min(fmt.rows, fmt.columns) >= 64
    assert max(fmt.rows, fmt.columns) == (128 if max(frames.shape[1:3]) > 128 else 64)
    assert placeholder.shape[0] == frames.shape[0]  # per-frame functional groups still match
    assert placeholder.shape[3] == frames.shape[3]
    assert placeholder.dtype == frames.dtype
    assert str(ds.PhotometricInterpretation) == SAMPLES[name]
    for keyword in ("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel"):
        assert ds.get(keyword) == original.get(keyword), keyword
    assert ("NumberOfFrames" in ds) == ("NumberOfFrames" in original)
    # Two values, laid out as the mask says: background and text.
    mask = placeholder_mask(fmt.rows, fmt.columns)
    for frame in placeholder:
        if ds.PhotometricInterpretation == "YBR_FULL_422":
            frame = frame[..., :1]  # chroma is constant
        ink, background = frame[mask], frame[~mask]
        assert (ink == ink[0]).all() and (background == background[0]).all()
        assert not np.array_equal(ink[0], background[0])


@pytest.mark.parametrize("name", list(SAMPLES))
def test_dcmdump_reads_it(name: str, written: dict[str, tuple[Path, Dataset, np.ndarray]]) -> None:
    exe = require_tool("dcmdump")
    done = subprocess.run(
        [exe, str(written[name][0])], capture_output=True, text=True, errors="replace", timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "E:" not in done.stderr
    assert "(7fe0,0010)" in done.stdout


@pytest.mark.parametrize("name", list(SAMPLES))
def test_dciodvfy_no_new_errors(name: str, written: dict[str, tuple[Path, Dataset, np.ndarray]]) -> None:
    require_tool("dciodvfy")
    added = new_errors(sample(name), written[name][0])
    assert not added, "\n".join(sorted(added))


def _displayed(ds: Dataset, values: np.ndarray) -> np.ndarray:
    """What a viewer shows for stored values: modality, VOI, MONOCHROME1 inversion."""
    shown = apply_voi_lut(apply_modality_lut(values, ds), ds).astype(np.float64)
    return -shown if ds.PhotometricInterpretation == "MONOCHROME1" else shown


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "RG1_UNCR.dcm", "vlut_04.dcm", "mlut_18.dcm", "MR_small.dcm"])
def test_text_is_light_on_dark_as_displayed(
    name: str, written: dict[str, tuple[Path, Dataset, np.ndarray]]
) -> None:
    ds = pydicom.dcmread(written[name][0])
    frames, fmt = read_frames(ds)
    mask = placeholder_mask(fmt.rows, fmt.columns)
    ink, background = frames[0, ..., 0][mask][0], frames[0, ..., 0][~mask][0]
    shown = _displayed(ds, np.array([background, ink]))
    assert shown[1] > shown[0]


def test_monochrome1_is_inverted() -> None:
    _, encrypted, _ = _placeholder("RG1_UNCR.dcm")
    frames, fmt = read_frames(encrypted)
    mask = placeholder_mask(fmt.rows, fmt.columns)
    assert frames[0, ..., 0][~mask][0] == 2**15 - 1 and frames[0, ..., 0][mask][0] == 0


def test_palette_uses_darkest_and_brightest_entries() -> None:
    _, encrypted, _ = _placeholder("examples_palette.dcm")
    frames, fmt = read_frames(encrypted)
    mask = placeholder_mask(fmt.rows, fmt.columns)
    rgb = apply_color_lut(frames[0, ..., 0], encrypted)
    assert (rgb[~mask] == 0).all()  # black
    assert (rgb[mask] == rgb[mask].max()).all() and rgb[mask].min() > 60000  # near white


def test_big_endian_palette_placeholder_matches_little_endian() -> None:
    _, big, _ = _placeholder("OBXXXX1A_expb.dcm")
    _, little, _ = _placeholder("OBXXXX1A.dcm")
    assert big.PixelData == little.PixelData
    assert big.RedPaletteColorLookupTableData == little.RedPaletteColorLookupTableData


def test_window_untouched_when_it_shows_the_text() -> None:
    original, encrypted, _ = _placeholder("693_UNCR.dcm")
    assert encrypted.get("WindowCenter") == original.get("WindowCenter")
    assert encrypted.get("WindowWidth") == original.get("WindowWidth")


def test_window_set_only_when_needed() -> None:
    """A window far above the stored range would show both values black: one is written."""
    original = read_quietly(sample("CT_small.dcm"))
    original.WindowCenter, original.WindowWidth = 100000, 10
    original.WindowCenterWidthExplanation = "NONSENSE"
    frames, fmt = read_frames(original)
    apply_placeholder(original, fmt)
    assert "WindowCenterWidthExplanation" not in original
    values, fmt = read_frames(original)
    mask = placeholder_mask(fmt.rows, fmt.columns)
    shown = _displayed(original, np.array([values[0, ..., 0][~mask][0], values[0, ..., 0][mask][0]]))
    assert shown[1] > shown[0]
    assert 0x00281050 in SNAPSHOT_TAGS and 0x00281055 in SNAPSHOT_TAGS


def test_padding_value_is_not_used_for_the_text() -> None:
    ds = read_quietly(sample("CT_small.dcm"))
    ds.PixelPaddingValue = 32767
    frames, fmt = read_frames(ds)
    apply_placeholder(ds, fmt)
    values = np.unique(read_frames(ds)[0])
    assert 32767 not in values and 32766 in values


def test_removes_what_would_be_false_or_show_the_original() -> None:
    original, encrypted, _ = _placeholder("MR-SIEMENS-DICOM-WithOverlays.dcm")
    assert any((t >> 16) in OVERLAY_GROUPS for t in original.keys())
    assert not any((t >> 16) in OVERLAY_GROUPS for t in encrypted.keys())
    ds = read_quietly(sample("CT_small.dcm"))
    ds.SmallestImagePixelValue, ds.LargestImagePixelValue = 0, 4000
    icon = Dataset()
    icon.Rows = 1
    ds.IconImageSequence = [icon]
    frames, fmt = read_frames(ds)
    apply_placeholder(ds, fmt)
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue", "IconImageSequence"):
        assert keyword not in ds


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "examples_ybr_color.dcm", "liver_1frame.dcm", "CT_small.dcm"])
def test_everything_else_is_untouched(name: str) -> None:
    original, encrypted, _ = _placeholder(name)
    touched = set(SNAPSHOT_TAGS) | {0x7FE00010, 0x7FE00008, 0x7FE00009}
    for elem in original:
        if elem.tag in touched or (elem.tag >> 16) in OVERLAY_GROUPS:
            continue
        assert encrypted[elem.tag] == elem, elem.keyword or str(elem.tag)
    assert set(encrypted.keys()) - set(original.keys()) <= touched


def test_deterministic_bytes() -> None:
    _, first, _ = _placeholder("US1_UNCR.dcm")
    _, second, _ = _placeholder("US1_UNCR.dcm")
    assert first.PixelData == second.PixelData


def test_size_rules() -> None:
    assert placeholder_size(512, 512) == (128, 128)
    assert placeholder_size(1024, 256) == (128, 64)  # aspect capped at 2:1
    assert placeholder_size(480, 640) == (96, 128)
    assert placeholder_size(128, 128) == (64, 64)  # never larger than a small original
    assert placeholder_size(3, 3) == (64, 64)
    rows, columns = placeholder_size(1955, 1841)
    assert rows == 128 and columns % 2 == 0 and 118 <= columns <= 122


def test_mask_reads_encrypted() -> None:
    """The text is there: 9 letters of ink between the borders on the middle rows."""
    mask = placeholder_mask(128, 64)
    inner = mask[1:-1, 1:-1]
    rows = np.flatnonzero(inner.any(axis=1))
    assert len(rows) == 7  # one 7-px line of text at scale 1
    columns = inner[rows].any(axis=0)
    runs = np.flatnonzero(np.diff(np.concatenate([[0], columns.astype(int), [0]])) == 1)
    assert len(runs) == 9


@pytest.mark.parametrize("name", ["emri_small.dcm", "examples_ybr_color.dcm"])
def test_a_multi_frame_placeholder_is_compressed(
    name: str, written: dict[str, tuple[Path, Dataset, np.ndarray]]
) -> None:
    """Every frame of the placeholder is alike: stored uncompressed they outgrew the payload."""
    path, _, frames = written[name]
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    placeholder, fmt = read_frames(ds)
    assert placeholder.shape[0] == frames.shape[0] > 1
    native = placeholder.nbytes
    assert len(ds.PixelData) < native / 4, (len(ds.PixelData), native)
    assert (placeholder == placeholder[0]).all()


def test_the_mask_is_drawn_once_per_shape_and_cannot_be_edited():
    """apply_placeholder reuses one read-only mask per shape (issue 14); callers still get their own."""
    from dicomcrypt.dicom.placeholder import _shared_mask

    shared = _shared_mask(128, 96)
    assert shared is _shared_mask(128, 96) and not shared.flags.writeable
    np.testing.assert_array_equal(shared, placeholder_mask(128, 96))
    mine = placeholder_mask(128, 96)
    mine[:] = False
    assert shared.any() and placeholder_mask(128, 96).any()
