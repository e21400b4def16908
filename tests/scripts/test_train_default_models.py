"""scripts/train_default_models.py: a thin configuration over dicomcrypt.codec.train, smoke-run in-process."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.codec import registry

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_default_models.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_default_models", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """Two studies to train on, one held-out CT and a copy of it under another name."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("MR_small.dcm", "emri_small.dcm", "CT_small.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "693_UNCR.dcm")
    return folder


def test_the_shipped_recipes_are_the_librarys(script: ModuleType) -> None:
    grey, colour = script.MODELS["grey"].config(), script.MODELS["colour"].config()
    recipe = (grey.arch, grey.init, grey.steps, grey.learning_rate, grey.noise_loss_weight)
    assert recipe == ("ps-ae", "haar", 1000, 3e-4, 0.03)
    assert (colour.channels, colour.init, colour.steps, colour.learning_rate) == (3, "random", 4000, 3e-3)
    assert grey.seed == colour.seed == 20221130 and grey.pixels_per_batch == 16 * 96 * 96
    assert script.HELD_OUT_PREFIXES == ("693_", "MR2_", "RG1_", "US1_")


def test_dry_run_lists_the_plan_and_writes_nothing(script: ModuleType, data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models"
    assert script.main(["--models", "grey", "--dry-run", "--data", str(data), "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "ps-grey@2" in printed and "MR_small.dcm" in printed
    assert "held out (1): 693_UNCR.dcm" in printed
    assert "same study or pixels as a held-out file (1): CT_small.dcm" in printed
    assert not out.exists()


def test_smoke_run_trains_exports_evaluates_and_writes_the_card(script: ModuleType, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    try:
        code = script.main(["--models", "grey", "--steps", "3", "--data", str(data), "--out", str(out),
                            "--workdir", str(tmp_path / "work"), "--threads", "1"])
        assert code == 0
        meta = json.loads((out / "ps-grey-v2.json").read_text())
        assert meta["model_id"] == "ps-grey@2" and meta["arch"] == "ps-ae"
        assert "CT_small.dcm" not in meta["training"]["train_files"] + meta["training"]["validation_files"]
        assert meta["lossless_latent_levels"] in (256, 64, 16, 4, 2)
        [held_out] = meta["evaluation"]
        assert held_out["file"] == "693_UNCR.dcm" and held_out["modality"] == "CT" and held_out["ssim"] > 0
        card = (out / "ps-grey-v2.md").read_text()
        assert "Held-out quality" in card and "train_default_models.py" in card
        assert (out / "ps-grey-v2-loss.png").read_bytes().startswith(b"\x89PNG")
        registry.clear_cache()
        assert registry.load_model(str(out)).info.model_id == "ps-grey@2"
    finally:
        registry.clear_cache()
