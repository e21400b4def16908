"""``dicomcrypt models``: the shipped models, their cards, a site's model folder, tampered weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dicomcrypt.cli.main import main
from dicomcrypt.codec.registry import DEFAULT_CODECS, DEFAULT_MODELS, MODELS_DIR, available_models


def test_list_shows_both_shipped_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:-2]}
    assert {"paper-grey@1", "paper-colour@1"} | set(available_models()) <= set(lines)
    grey = json.loads((MODELS_DIR / "paper-grey-v1.json").read_text())
    assert grey["sha256"][:16] in lines["paper-grey@1"] and "MISMATCH" not in out
    assert "held-out image" in lines["paper-grey@1"]
    assert lines[DEFAULT_CODECS[1]].split()[1] == "*" and lines["paper-grey@1"].split()[1] == "paper-ae"
    assert lines[DEFAULT_MODELS[1]].split()[1] == "+"
    assert out.splitlines()[-2:] == ["* default for its channel count (encrypt, send)",
                                     "+ default autoencoder for its channel count (train, evaluate, bench)"]


def test_list_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    models = {m["model_id"]: m for m in json.loads(capsys.readouterr().out)}
    grey = models["paper-grey@1"]
    assert grey["channels"] == 1 and grey["sha256_ok"] and grey["weights_bytes"] > 100_000
    assert models["paper-colour@1"]["channels"] == 3
    assert {m for m, entry in models.items() if entry["default"]} == set(DEFAULT_CODECS.values())
    assert {m for m, entry in models.items() if entry["default_autoencoder"]} == set(DEFAULT_MODELS.values())
    assert {"693_UNCR.dcm", "MR2_UNCR.dcm", "RG1_UNCR.dcm"} <= {row["file"] for row in grey["held_out"]}
    assert all(0 < row["ssim"] <= 1 for row in grey["held_out"])


def test_show_prints_the_card(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "paper-grey@1"]) == 0
    assert capsys.readouterr().out == (MODELS_DIR / "paper-grey-v1.md").read_text()


def test_show_a_model_folder_and_notice_tampered_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "site-model"
    folder.mkdir()
    for suffix in ("json", "pt", "md"):
        shutil.copyfile(MODELS_DIR / f"paper-grey-v1.{suffix}", folder / f"paper-grey-v1.{suffix}")
    assert main(["models", "show", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("# Model card")
    weights = folder / "paper-grey-v1.pt"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert main(["models", "show", str(folder)]) == 1
    assert "SHA-256 of the weights does not match" in capsys.readouterr().err


def test_show_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "nope@1"]) == 3
    err = capsys.readouterr().err
    assert "unknown model nope@1" in err and "paper-grey@1" in err


def test_listing_does_not_load_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from dicomcrypt.cli.main import main; code = main(['models']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; raise SystemExit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "paper-grey@1" in done.stdout
