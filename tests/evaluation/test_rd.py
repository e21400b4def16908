"""BD-rate on curves with a known answer; our points through the real pipeline; the CT window error."""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.crypto import Key
from dicomcrypt.evaluation import rd


def _curve(scale: float, psnrs: list[float]) -> list[tuple[float, float]]:
    """Rate doubling every 6 dB, times ``scale``: log-rate is linear in PSNR, so PCHIP is exact."""
    return [(scale * 2 ** (p / 6.0), p) for p in psnrs]


def test_bd_rate_of_a_constant_ratio_is_that_ratio() -> None:
    reference = _curve(1.0, [30, 36, 42, 48, 54, 60])
    assert rd.bd_rate(reference, _curve(0.8, [31, 37, 44, 50, 58])) == pytest.approx(-20.0, abs=1e-9)
    assert rd.bd_rate(reference, _curve(1.5, [33, 40, 47, 57])) == pytest.approx(50.0, abs=1e-9)
    assert rd.bd_rate(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_bd_rate_of_a_curve_shifted_in_psnr() -> None:
    """1 dB better everywhere, at 6 dB per doubling: 2^(-1/6) - 1 of the rate."""
    reference = _curve(1.0, [30, 40, 50, 60])
    better = [(r, p + 1.0) for r, p in reference]
    assert rd.bd_rate(reference, better) == pytest.approx((2 ** (-1 / 6) - 1) * 100, abs=1e-9)


def test_bd_rate_needs_an_overlap_inside_the_range() -> None:
    reference = _curve(1.0, [30, 40, 50, 60])
    assert rd.bd_rate(reference, _curve(1.0, [56, 58, 62])) is None  # above 55 dB
    assert rd.bd_rate(reference, [(1.0, 45.0)]) is None  # one point is no curve
    # a larger stream that is no better is dropped, not interpolated through
    assert rd.bd_rate(reference, _curve(0.5, [36, 44, 52]) + [(1e6, 40.0)]) == pytest.approx(-50.0, abs=1e-9)


def test_window_max_hu() -> None:
    original = np.array([[[[0], [50], [200]]]], np.int16)  # HU = value * 2 - 20: -20, 80, 380
    restored = np.array([[[[3], [46], [0]]]], np.int16)
    assert rd.window_max_hu(original, restored, (2.0, -20.0)) == 8.0  # only the 80 HU pixel is in C40/W100
    assert rd.window_max_hu(original, restored, None) is None


@pytest.mark.slow
def test_image_rd_on_ct_small() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    result = rd.image_rd(ds, "CT_small", key=Key.generate(), codecs=(rd.REFERENCE,))
    curves = result.curves()
    assert {rd.OURS, "ps-grey@2", "ps-grey@1", "paper-grey@1", rd.REFERENCE} <= set(curves)
    assert [p.setting for p in curves[rd.OURS]] == [f"quality {q}" for q in rd.OUR_QUALITIES]  # smallest first
    assert [p.setting for p in curves["ps-grey@2"]] == ["latent u8", "latent f16"]
    u8 = curves["ps-grey@2"][0]
    assert u8.nbytes > 0 and u8.bpp == pytest.approx(8 * u8.nbytes / (128 * 128))
    assert 40 < u8.psnr_db < 70 and 0.9 < u8.ssim <= 1 and u8.window_max_hu is not None
    assert rd.headline_curve(result.points, 1) == rd.OURS  # the wavelet codec's quality levels
    assert set(result.bd_rate) == set(curves) - {rd.REFERENCE}
    doc = result.to_json()
    assert all(math.isfinite(p["psnr_db"]) for p in doc["points"])
    png = rd.plot(result, "ps-grey@2")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert "| CT_small |" in rd.to_markdown([result], {"CT_small": "ps-grey@2"})
