"""Model registry: ids, defaults, caching, SHA-256 checks, model folders, lazy torch."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dicomcrypt.codec import registry
from dicomcrypt.codec.registry import DEFAULT_MODELS, MODELS_DIR, available_models, load_model
from dicomcrypt.errors import ModelError, ModelMismatchError


def test_importing_the_registry_does_not_import_torch() -> None:
    code = "import sys, dicomcrypt.codec.registry; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "False"


def test_shipped_defaults_and_their_files() -> None:
    shipped = (("paper-grey@1", 1, "paper-ae"), ("paper-colour@1", 3, "paper-ae"),
               ("ps-grey@1", 1, "ps-ae"), ("ps-colour@1", 3, "ps-ae"), ("ps-grey@2", 1, "ps-ae"))
    assert {model_id for model_id, _, _ in shipped} <= set(available_models())
    for model_id, channels, arch in shipped:
        meta_path = next(p for p in MODELS_DIR.glob("*.json") if json.loads(p.read_text())["model_id"] == model_id)
        meta = json.loads(meta_path.read_text())
        assert meta["channels"] == channels and meta["arch"] == arch
        assert (MODELS_DIR / meta["card"]).is_file()
        weights = (MODELS_DIR / meta["weights"]).read_bytes()
        assert hashlib.sha256(weights).hexdigest() == meta["sha256"]


def test_defaults_by_channel_count_are_cached() -> None:
    grey = load_model()
    assert grey is load_model(DEFAULT_MODELS[1]) is load_model(None, channels=1)
    assert grey.info.model_id == DEFAULT_MODELS[1] and grey.info.channels == 1 and grey.info.arch == "ps-ae"
    assert isinstance(grey.info.sha256, bytes) and len(grey.info.sha256) == 32
    colour = load_model(channels=3)
    assert colour.info.model_id == DEFAULT_MODELS[3] and colour.info.channels == 3
    # The paper's and the first ps models stay shipped and loadable (old envelopes name them).
    assert load_model("ps-grey@1").info.arch == load_model("ps-colour@1").info.arch == "ps-ae"
    assert load_model("paper-grey@1").info.arch == load_model("paper-colour@1").info.arch == "paper-ae"


def test_unknown_and_malformed_ids() -> None:
    with pytest.raises(ModelError, match="unknown model paper-grey@99"):
        load_model("paper-grey@99")
    with pytest.raises(ModelError, match="name@version"):
        load_model("Paper Grey")
    with pytest.raises(ModelError, match="no default"):
        load_model(channels=2)


def _copy_model(tmp_path: Path, model_id: str = "paper-grey@1") -> Path:
    meta_path = next(p for p in MODELS_DIR.glob("*.json") if json.loads(p.read_text())["model_id"] == model_id)
    meta = json.loads(meta_path.read_text())
    folder = tmp_path / "site-model"
    folder.mkdir()
    shutil.copy(MODELS_DIR / meta["weights"], folder / meta["weights"])
    meta["model_id"] = "site-grey@1"
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_a_model_folder_loads_by_path(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    model = load_model(str(folder))
    assert model.info.model_id == "site-grey@1"
    assert model.info.sha256 == load_model("paper-grey@1").info.sha256


def test_wrong_sha256_is_refused_before_torch_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _copy_model(tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    weights = folder / meta["weights"]
    weights.write_bytes(weights.read_bytes() + b"tampered")
    found = hashlib.sha256(weights.read_bytes()).hexdigest()

    import torch

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load called on unverified weights")

    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(ModelError) as info:
        load_model(str(folder))
    message = str(info.value)
    assert "site-grey@1" in message and meta["sha256"] in message and found in message


def test_broken_metadata_is_a_model_error(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    meta["weights"] = "../elsewhere.pt"
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="weights must be a file name"):
        load_model(str(folder))
    with pytest.raises(ModelError, match="no such model"):
        load_model(str(tmp_path / "missing" / "model.json"))


def test_check_identity_raises_model_mismatch() -> None:
    model = load_model()
    model.check_identity("paper-grey@1", model.info.sha256)
    with pytest.raises(ModelMismatchError, match="paper-grey@1"):
        model.check_identity("paper-grey@1", bytes(32))


def test_clear_cache_reloads() -> None:
    first = load_model()
    registry.clear_cache()
    assert load_model() is not first
