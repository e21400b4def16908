"""``dicomcrypt bench`` on small real files: the table, the JSON, the refusals (not the speed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.cli.main import main
from dicomcrypt.codec.registry import DEFAULT_MODELS


def test_bench_prints_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("MR_small.dcm", "SC_rgb.dcm", "rtplan.dcm"):
        shutil.copyfile(get_testdata_file(name), src / name)
    out = tmp_path / "bench.json"
    assert main(["bench", str(src), "--repeat", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr()
    assert "MR_small.dcm" in printed.out and "paper, Table 3" in printed.out
    assert "rtplan.dcm: skipped" in printed.err
    doc = json.loads(out.read_text())
    assert doc["repeat"] == 1 and doc["paper_table3"]["ae_aes_encrypt_s"] == 0.016
    row, colour = doc["images"]
    assert row["file"] == "MR_small.dcm" and row["raw_bytes"] == 8192
    assert colour["file"] == "SC_rgb.dcm" and colour["geometry"] == "100x100x1x3" and colour["raw_bytes"] == 30000
    assert colour["model_id"] == DEFAULT_MODELS[3] and 0 < colour["lossy_vs_raw"] < 1
    assert 0 < row["lossy_vs_raw"] < 1 and row["lossless_vs_jpegls"] > 0
    assert row["ae_aes_encrypt_s"] > 0 and row["encrypt_ratio_ae_over_aes"] > 0
    assert [s["file"] for s in doc["skipped"]] == ["rtplan.dcm"]

    assert main(["bench", str(src), "--repeat", "1", "--json", str(out)]) == 3
    assert "use --force" in capsys.readouterr().err


def test_bench_refuses_bad_repeat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path), "--repeat", "0"]) == 3
    assert "--repeat must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_rd_writes_plot_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src / "CT_small.dcm")
    out = tmp_path / "rd"
    assert main(["bench", str(src), "--rd", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "BD-rate against JPEG 2000 over 35-55 dB" in printed and "| CT_small.dcm |" in printed
    assert (out / "CT_small.dcm.rd.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    doc = json.loads((out / "rd.json").read_text())
    assert doc["headline_curves"] == {"CT_small.dcm": "ours"}
    (image,) = doc["images"]
    curves = {p["curve"] for p in image["points"]}
    expected = {"JPEG 2000", "HTJ2K", "JPEG-XL", "JPEG-LS near-lossless", "paper-grey@1", DEFAULT_MODELS[1], "ours"}
    assert expected <= curves
    assert set(image["bd_rate"]) == curves - {"JPEG 2000"}
    assert all(p["bpp"] > 0 and 0 < p["ssim"] <= 1 for p in image["points"])
    markdown = (out / "rd.md").read_text()
    assert markdown.startswith("# Rate-distortion report") and "| JPEG-XL | distance" in markdown

    assert main(["bench", str(src), "--rd", str(out)]) == 3  # an existing report is not replaced
    assert "use --force" in capsys.readouterr().err
