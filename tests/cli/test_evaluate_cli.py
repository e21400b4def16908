"""``dicomcrypt evaluate`` on small real files: the report files, their fields, their values."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.codec.registry import DEFAULT_MODELS

from dicomcrypt.cli.main import main
from dicomcrypt.noise import NOISE_KINDS

pytestmark = pytest.mark.slow  # evaluates models over sample files


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    src = tmp_path_factory.mktemp("in")
    for name in ("CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "rtplan.dcm"):
        shutil.copyfile(get_testdata_file(name), src / name)
    (src / "notes.txt").write_text("not DICOM\n")
    out = tmp_path_factory.mktemp("out") / "report"
    code = main(["evaluate", str(src), "--report", str(out), "--no-progress", "--seed", "1"])
    return out, code


def test_evaluate_writes_json_markdown_and_figures(evaluated: tuple[Path, int]) -> None:
    out, code = evaluated
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["report"] == "dicomcrypt evaluate" and report["seed"] == 1 and report["frames"] == "middle"
    assert report["models"] == sorted([DEFAULT_MODELS[1], DEFAULT_MODELS[3]])
    assert {"psnr_bits_db", "psnr_range_db", "noise"} <= set(report["conventions"])
    images = {image["file"]: image for image in report["images"]}
    assert set(images) == {"CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm"}
    assert {s["file"] for s in report["skipped"]} == {"rtplan.dcm", "notes.txt"} and report["failed"] == []
    for image in images.values():
        q = image["reconstruction"]
        assert math.isfinite(q["psnr_bits_db"]) and math.isfinite(q["psnr_range_db"]) and 0 < q["ssim"] <= 1
        assert set(image["noise"]) == set(NOISE_KINDS)
        png = out / image["figure"]
        assert png.read_bytes().startswith(b"\x89PNG")
    ct = images["CT_small.dcm"]["reconstruction"]
    assert ct["psnr_bits_db"] > 20 and ct["ssim"] > 0.9 and ct["window_mae_hu"] is not None
    assert images["SC_rgb.dcm"]["model_id"] == DEFAULT_MODELS[3]
    assert report["summary"]["images"] == 3
    targets = report["by_model"][DEFAULT_MODELS[1]]["targets"]
    assert targets["psnr_bits_at_least_45_db_on_every_image"] is True  # CT_small and MR_small: 60+ dB
    assert targets["latent_smaller_than_raw_on_every_image"] is True
    markdown = (out / "report.md").read_text()
    assert f"| CT_small.dcm | {DEFAULT_MODELS[1]} | CT |" in markdown and "Poisson | peak_counts 256" in markdown
    assert not list(out.rglob(".*.tmp"))


def test_existing_report_needs_force(evaluated: tuple[Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = evaluated
    single = out.parent / "one"
    single.mkdir()
    shutil.copyfile(get_testdata_file("MR_small.dcm"), single / "MR_small.dcm")
    assert main(["evaluate", str(single), "--report", str(out), "--no-progress"]) == 3
    assert "already holds a report" in capsys.readouterr().err
    assert main(["evaluate", str(single), "--report", str(out), "--no-progress", "--force"]) == 0
    assert [i["file"] for i in json.loads((out / "report.json").read_text())["images"]] == ["MR_small.dcm"]


def test_bad_model_and_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path / "absent"), "--report", str(tmp_path / "r")]) == 3
    shutil.copyfile(get_testdata_file("MR_small.dcm"), tmp_path / "MR_small.dcm")
    assert main(["evaluate", str(tmp_path), "--report", str(tmp_path / "r"), "--model", "nope@1"]) == 3
    assert "unknown model nope@1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_nothing_evaluable_is_a_failure(tmp_path: Path) -> None:
    shutil.copyfile(get_testdata_file("rtplan.dcm"), tmp_path / "rtplan.dcm")
    assert main(["evaluate", str(tmp_path), "--report", str(tmp_path / "r"), "--no-progress"]) == 1
    assert json.loads((tmp_path / "r" / "report.json").read_text())["summary"] == {"images": 0}


def _site_copy_of_grey(folder: Path) -> Path:
    """The shipped grey weights under another id: a second model whose figures must be identical."""
    from dicomcrypt.codec.registry import MODELS_DIR

    folder.mkdir()
    shutil.copyfile(MODELS_DIR / "paper-grey-v1.pt", folder / "paper-grey-v1.pt")
    meta = json.loads((MODELS_DIR / "paper-grey-v1.json").read_text())
    meta.update(model_id="site-grey@1", card=None)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_two_models_side_by_side(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(get_testdata_file("MR_small.dcm"), src / "MR_small.dcm")
    site = _site_copy_of_grey(tmp_path / "site-model")
    out = tmp_path / "report"
    assert main(["evaluate", str(src), "--report", str(out), "--no-progress",
                 "--model", "paper-grey@1", "--model", str(site)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["models"] == ["paper-grey@1", "site-grey@1"]
    first, second = report["images"]
    assert first["reconstruction"] == second["reconstruction"] and first["noise"] == second["noise"]
    assert set(report["by_model"]) == {"paper-grey@1", "site-grey@1"}
    assert (out / first["figure"]).is_file() and (out / second["figure"]).is_file()
    assert first["figure"] != second["figure"]
    assert "`site-grey@1`, 1 image:" in (out / "report.md").read_text()
    assert report["skipped"] == []


def test_a_file_no_model_takes_is_listed_once(tmp_path: Path) -> None:
    shutil.copyfile(get_testdata_file("SC_rgb.dcm"), tmp_path / "SC_rgb.dcm")
    shutil.copyfile(get_testdata_file("MR_small.dcm"), tmp_path / "MR_small.dcm")
    (tmp_path / "notes.txt").write_text("not DICOM\n")
    out = tmp_path / "report"
    assert main(["evaluate", str(tmp_path), "--report", str(out), "--no-progress",
                 "--model", "paper-grey@1", "--model", "paper-grey@1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [s["file"] for s in report["skipped"]] == ["SC_rgb.dcm", "notes.txt"]
