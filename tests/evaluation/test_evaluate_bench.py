"""The Table 3 benchmark on a small real file: sizes and the shape of the timings, not speed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.codec.registry import DEFAULT_MODELS
from dicomcrypt.crypto import Key
from dicomcrypt.evaluation.bench import HEADER, bench_file, format_row, median_time


def test_bench_file_on_mr_small() -> None:
    row = bench_file(Path(get_testdata_file("MR_small.dcm")), "MR_small.dcm", model_id=None, key=Key.generate(),
                     repeat=2)
    assert row.model_id == DEFAULT_MODELS[1] and row.geometry == "64x64x1x1" and row.repeat == 2
    assert row.raw_bytes == row.timed_raw_bytes == 64 * 64 * 2
    assert 0 < row.lossy_bytes < row.raw_bytes
    assert row.lossy_bytes < row.lossless_bytes  # lossless adds the residual
    assert 0 < row.jpegls_bytes < row.raw_bytes
    assert row.jpegls_bytes < row.standard_bytes < row.jpegls_bytes + 4000  # + metadata and attributes
    for name in ("aes_raw_encrypt_s", "aes_raw_decrypt_s", "encoder_s", "aes_latent_encrypt_s",
                 "aes_latent_decrypt_s", "decoder_s", "jpegls_encode_s"):
        assert getattr(row, name) > 0, name
    data = row.to_json()
    assert data["ae_aes_encrypt_s"] == pytest.approx(row.encoder_s + row.aes_latent_encrypt_s)
    assert data["lossless_vs_jpegls"] == pytest.approx(row.lossless_bytes / row.jpegls_bytes)
    assert data["encrypt_ratio_ae_over_aes"] > 0
    line = format_row(row)
    assert line.startswith("MR_small.dcm") and len(line.split()) >= 12
    assert "JPEG-LS" in HEADER


@pytest.mark.slow
def test_multi_frame_times_the_middle_frame_and_sizes_the_object() -> None:
    row = bench_file(Path(get_testdata_file("emri_small.dcm")), "emri", model_id=None, key=Key.generate(), repeat=1)
    assert row.geometry == "64x64x1x1"
    assert row.raw_bytes == 10 * row.timed_raw_bytes
    assert row.lossy_bytes < row.raw_bytes


def test_median_time_warms_up_then_takes_the_median() -> None:
    calls = []
    seconds, result = median_time(lambda: calls.append(1) or len(calls), 3)
    assert len(calls) == 4 and result == 4 and seconds >= 0
    with pytest.raises(ValueError, match="repeat"):
        bench_file(Path(get_testdata_file("MR_small.dcm")), "x", model_id=None, key=Key.generate(), repeat=0)
