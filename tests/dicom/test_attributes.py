"""snapshot_attributes / restore_attributes: after placeholder + restore, the dataset is the original."""

from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from dicomcrypt.dicom import (
    OVERLAY_GROUPS,
    SNAPSHOT_TAGS,
    apply_placeholder,
    read_frames,
    restore_attributes,
    snapshot_attributes,
    transfer_syntax,
    write_frames,
)
from dicomcrypt.errors import PayloadFormatError
from helpers.corpus import read_quietly, sample

SAMPLES = [
    "693_UNCR.dcm",
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "US1_UNCR.dcm",
    "color-pl.dcm",
    "examples_palette.dcm",
    "gdcm-US-ALOKA-16.dcm",  # implicit VR, segmented palette
    "OT-PAL-8-face.dcm",  # no file meta
    "emri_small.dcm",
    "eCT_Supplemental.dcm",
    "liver_1frame.dcm",
    "liver.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "SC_ybr_full_uncompressed.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "examples_overlay.dcm",
    "vlut_04.dcm",
    "rtdose.dcm",
    "SC_rgb_32bit_2frame.dcm",
    "image_dfl.dcm",  # deflated
    "RG3_UNCR.dcm",
]
# Compressed originals: restored with native pixels, so the transfer syntax (and for colour
# JPEG the photometric interpretation) change as write_frames documents.
COMPRESSED = [
    "examples_ybr_color.dcm",
    "US1_J2KR.dcm",
    "emri_small_RLE.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
    "JPEG-LL.dcm",
    "693_J2KR.dcm",
]
GROUP_LENGTH = 0x0000


# rtdose*.dcm carries a UID pydicom warns about (a property of the test file, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")


def _through_file(ds: Dataset) -> Dataset:
    """Store and load, as between encryption and decryption."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _differences(a: Dataset, b: Dataset, *, skip: set[int], path: str = "") -> list[str]:
    """Every element (recursively) whose presence, VR or value differs."""
    out = []
    for tag in sorted(set(a.keys()) | set(b.keys())):
        if tag in skip or (not path and tag.element == GROUP_LENGTH):
            continue  # pydicom's writer drops retired group lengths
        where = f"{path}{tag}"
        if tag not in a or tag not in b:
            out.append(f"{where} only in {'original' if tag in a else 'restored'}")
            continue
        x, y = a[tag], b[tag]
        if x.VR == "SQ" and y.VR == "SQ" and len(x.value) == len(y.value):
            for i, (p, q) in enumerate(zip(x.value, y.value)):
                out += _differences(p, q, skip=set(), path=f"{where}[{i}].")
        elif x.VR != y.VR or x.value != y.value:
            out.append(f"{where} {x.keyword}: {x.VR} {str(x.value)[:40]} != {y.VR} {str(y.value)[:40]}")
    return out


def _encrypt_restore(name: str, *, via_file: bool) -> tuple[Dataset, Dataset, np.ndarray]:
    original = read_quietly(sample(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames, fmt = read_frames(original)
    encrypted = copy.deepcopy(original)
    blob = snapshot_attributes(encrypted)
    apply_placeholder(encrypted, fmt)
    if via_file:
        encrypted = _through_file(encrypted)
    restore_attributes(encrypted, blob)
    write_frames(encrypted, frames, fmt)
    return original, encrypted, frames


@pytest.mark.parametrize("via_file", [False, True], ids=["in-memory", "via-file"])
@pytest.mark.parametrize("name", SAMPLES)
def test_native_round_trip_is_the_original(name: str, via_file: bool) -> None:
    original, restored, frames = _encrypt_restore(name, via_file=via_file)
    assert not _differences(original, restored, skip={0x7FE00010})
    np.testing.assert_array_equal(read_frames(restored)[0], frames)
    assert transfer_syntax(restored) == transfer_syntax(original) or (
        # no file meta in the original: the dataset keeps the one it was given
        not original.get("file_meta", Dataset()).get("TransferSyntaxUID")
        and transfer_syntax(restored) == ExplicitVRLittleEndian
    )
    if name not in ("MR_small_padded.dcm", "mlut_18.dcm"):
        assert restored.PixelData == original.PixelData
        assert restored["PixelData"].VR == original["PixelData"].VR


@pytest.mark.parametrize("name", COMPRESSED)
def test_compressed_round_trip(name: str) -> None:
    original, restored, frames = _encrypt_restore(name, via_file=True)
    expected_pi = read_frames(original)[1].photometric_interpretation
    skip = {0x7FE00010, 0x00280004}
    assert not _differences(original, restored, skip=skip)
    assert restored.PhotometricInterpretation == expected_pi
    assert restored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(read_frames(restored)[0], frames)


def test_big_endian_original_comes_back_little_endian() -> None:
    big = read_quietly(sample("OBXXXX1A_expb.dcm"))
    little = read_quietly(sample("OBXXXX1A.dcm"))
    frames, fmt = read_frames(big)
    blob = snapshot_attributes(big)
    apply_placeholder(big, fmt)
    restored = _through_file(big)
    restore_attributes(restored, blob)
    write_frames(restored, frames, fmt)
    assert restored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    for keyword in ("RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData", "PixelData"):
        assert restored[keyword].value == little[keyword].value, keyword


def test_absent_attributes_come_back_absent() -> None:
    """The placeholder may add a window; restore removes it again."""
    ds = read_quietly(sample("CT_small.dcm"))
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.RescaleIntercept = 100000  # no window at all: nothing to fix, nothing added
    blob = snapshot_attributes(ds)
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.SmallestImagePixelValue = 3
    restore_attributes(ds, blob)
    assert "WindowCenter" not in ds and "SmallestImagePixelValue" not in ds


def test_overlays_and_icons_round_trip() -> None:
    ds = read_quietly(sample("CT_small.dcm"))
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel = 2, 2, 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    icon.add_new(0x7FE00010, "OB", b"\x00\x01\x02\x03")
    ds.IconImageSequence = [icon]
    ds.add_new(0x60020010, "US", 4)
    ds.add_new(0x60023000, "OW", b"\xff\x00")
    before = copy.deepcopy(ds)
    blob = snapshot_attributes(ds)
    frames, fmt = read_frames(ds)
    apply_placeholder(ds, fmt)
    assert "IconImageSequence" not in ds and 0x60023000 not in ds
    restore_attributes(ds, blob)
    write_frames(ds, frames, fmt)
    assert not _differences(before, ds, skip=set())


def test_text_in_another_character_set() -> None:
    ds = read_quietly(sample("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.WindowCenterWidthExplanation = "Fenêtre crâne"
    blob = snapshot_attributes(ds)
    del ds.WindowCenterWidthExplanation
    restore_attributes(ds, blob)
    assert ds.WindowCenterWidthExplanation == "Fenêtre crâne"
    assert ds.SpecificCharacterSet == "ISO_IR 100"


def test_transfer_syntax_is_restored_for_write_frames_to_fix() -> None:
    ds = read_quietly(sample("SC_rgb_jpeg_dcmtk.dcm"))
    blob = snapshot_attributes(ds)
    frames, fmt = read_frames(ds)
    apply_placeholder(ds, fmt)
    restore_attributes(ds, blob)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    write_frames(ds, frames, fmt)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_implicit_original_keeps_implicit() -> None:
    original, restored, _ = _encrypt_restore("MR_small_implicit.dcm", via_file=True)
    assert restored.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian


def test_tag_list_is_documented() -> None:
    assert all(reason for reason in SNAPSHOT_TAGS.values())
    assert 0x7FE00010 not in SNAPSHOT_TAGS  # the pixels are the payload, not a snapshot
    assert OVERLAY_GROUPS[0] == 0x6000 and OVERLAY_GROUPS[-1] == 0x601E


@pytest.mark.parametrize(
    "blob",
    [b"", b"DCATTR1\n", b"DCATTR1\n\xff\xff\x00\x00{}", b"DCATTR1\n\x02\x00\x00\x00{}", b"garbage"],
)
def test_malformed_snapshot(blob: bytes) -> None:
    with pytest.raises(PayloadFormatError):
        restore_attributes(Dataset(), blob)
