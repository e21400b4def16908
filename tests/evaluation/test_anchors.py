"""The anchor codecs on real pixels: lossless restores every value, lossy reaches the asked PSNR
on the decoded pixels (signed CT, 8-bit colour, multi-frame)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt import dicom, quality
from dicomcrypt.errors import UnsupportedImageError
from dicomcrypt.evaluation import anchors


def _frames(name: str) -> np.ndarray:
    frames, _ = dicom.read_frames(pydicom.dcmread(get_testdata_file(name)))
    return frames


def _signed_ct() -> np.ndarray:
    """CT_small's stored values less 1024: a signed CT with air below zero, as 693_UNCR stores it."""
    return _frames("CT_small.dcm") - np.int16(1024)


def test_prepare_shifts_signed_grey_to_the_bits_its_range_needs() -> None:
    ct = _signed_ct()
    assert ct.dtype == np.int16 and ct.min() < 0
    pixels = anchors.prepare(ct)
    assert pixels.offset == int(ct.min()) and pixels.frames[0].dtype == np.uint16 and pixels.frames[0].ndim == 2
    assert 1 << (pixels.bits - 1) <= int(ct.max()) - int(ct.min()) < 1 << pixels.bits
    assert np.array_equal(pixels.restore([f for f in pixels.frames]), ct)


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb.dcm"])
@pytest.mark.parametrize("codec", [anchors.JPEGLS_NEAR, anchors.JPEG2000, anchors.HTJ2K, anchors.JPEGXL])
def test_lossless_restores_every_value(name: str, codec: str) -> None:
    original = _signed_ct() if name == "CT_small.dcm" else _frames(name)
    point = anchors.lossless(anchors.prepare(original), codec)
    assert point.exact and np.array_equal(point.decoded, original) and point.decoded.dtype == original.dtype
    assert 0 < point.nbytes < original.nbytes


@pytest.mark.parametrize("name, target, codecs", [
    ("CT_small.dcm", 45.0, anchors.LOSSY_ANCHORS),
    ("SC_rgb.dcm", 30.0, anchors.LOSSY_ANCHORS),
    ("emri_small.dcm", 38.0, (anchors.JPEG2000, anchors.JPEGLS_NEAR)),  # 10 frames, one stream each
])
def test_lossy_reaches_the_target_on_decoded_pixels(name: str, target: float, codecs: tuple[str, ...]) -> None:
    original = _signed_ct() if name == "CT_small.dcm" else _frames(name)
    pixels = anchors.prepare(original)
    for codec in codecs:
        point = anchors.smallest_reaching(pixels, codec, target)
        measured = quality.compare(original, point.decoded)  # recomputed here, not trusted from the search
        assert measured.psnr_db >= target, (codec, measured.psnr_db)
        assert point.psnr_db == pytest.approx(measured.psnr_db)
        assert point.nbytes <= anchors.lossless(pixels, codec).nbytes < original.nbytes, codec
    # a higher target never costs fewer bytes
    low = anchors.smallest_reaching(pixels, anchors.JPEG2000, target - 6.0)
    assert low.nbytes < anchors.smallest_reaching(pixels, anchors.JPEG2000, target).nbytes


def test_curve_spans_a_range_of_real_streams() -> None:
    pixels = anchors.prepare(_frames("CT_small.dcm"))
    points = anchors.curve(pixels, anchors.JPEGLS_NEAR)
    assert len(points) >= 8 and [p.nbytes for p in points] == sorted(p.nbytes for p in points)
    assert min(p.psnr_db for p in points) < 35 and max(p.psnr_db for p in points) > 55
    near1 = next(p for p in points if p.setting == "NEAR 1")
    assert np.abs(near1.decoded.astype(int) - pixels.original.astype(int)).max() == 1


def test_refuses_what_the_anchors_cannot_code() -> None:
    with pytest.raises(UnsupportedImageError, match="8-bit colour"):
        anchors.prepare(np.zeros((1, 8, 8, 3), np.uint16))
    with pytest.raises(UnsupportedImageError, match="integer frames"):
        anchors.prepare(np.zeros((1, 8, 8, 1), np.float32))
