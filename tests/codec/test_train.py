"""Training: study-level split, repeatable and resumable runs, and `dicomcrypt train` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from dicomcrypt.cli.main import main
from dicomcrypt.codec import registry
from dicomcrypt.codec import train as training
from dicomcrypt.codec.train_data import TrainingImage, collect, split_by_group
from dicomcrypt.crypto import Key
from dicomcrypt.errors import TrainingError
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance

pytestmark = pytest.mark.slow  # trains models


def _images(groups: int, per_group: int) -> list[TrainingImage]:
    rng = np.random.default_rng(0)
    return [
        TrainingImage(f"s{g}-{i}.dcm", f"study-{g}", rng.random((1, 40, 40, 1), dtype=np.float32))
        for g in range(groups)
        for i in range(per_group)
    ]


def test_split_keeps_every_study_on_one_side_and_is_seeded() -> None:
    images = _images(10, 3)
    train, validation = split_by_group(images, 0.2, seed=7)
    assert {im.group for im in train}.isdisjoint({im.group for im in validation})
    assert len({im.group for im in validation}) == 2 and len(train) + len(validation) == len(images)
    again = split_by_group(images, 0.2, seed=7)
    assert [im.name for im in again[1]] == [im.name for im in validation]
    assert [im.name for im in split_by_group(images, 0.2, seed=8)[1]] != [im.name for im in validation]


def test_a_single_study_is_all_training() -> None:
    train, validation = split_by_group(_images(1, 4), 0.5, seed=0)
    assert len(train) == 4 and validation == []


def test_collect_groups_by_study_and_drops_duplicate_pixels() -> None:
    paths = [Path(get_testdata_file(n)) for n in ("MR_small.dcm", "MR_small_RLE.dcm", "CT_small.dcm")]
    images, skipped = collect(paths, channels=1, modality="MR")
    assert [im.name for im in images] == ["MR_small.dcm"]
    reasons = {Path(s.name).name: s.reason for s in skipped}
    assert reasons["MR_small_RLE.dcm"] == "duplicate pixels" and reasons["CT_small.dcm"].startswith("modality")
    study = pydicom.dcmread(paths[0]).StudyInstanceUID
    assert images[0].group == f"StudyInstanceUID:{study}"
    assert images[0].frames.dtype == np.float32 and 0 <= images[0].frames.min() <= images[0].frames.max() <= 1


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = training.TrainConfig(steps=6, checkpoint_every=3, validate_every=3, pixels_per_batch=4 * 64 * 64,
                                  crop_sizes=(32,), noise_share=0.5)
    images = _images(3, 1)
    straight, history, _ = training.train(config, images[:2], images[2:], tmp_path / "a", device=torch.device("cpu"))

    def stop_at_three(progress: training.Progress) -> None:
        if progress.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(config, images[:2], images[2:], tmp_path / "b", on_step=stop_at_three,
                       device=torch.device("cpu"))
    resumed, resumed_history, _ = training.train(config, images[:2], images[2:], tmp_path / "b",
                                                 device=torch.device("cpu"))
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert resumed_history.validation == history.validation and len(history.validation) == 2


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    config = training.TrainConfig(steps=2, pixels_per_batch=4 * 32 * 32, crop_sizes=(32,))
    images = _images(2, 1)
    training.train(config, images, [], tmp_path, device=torch.device("cpu"))
    with pytest.raises(TrainingError, match="another run"):
        training.train(config, images[:1], [], tmp_path, device=torch.device("cpu"))


def test_cli_train_writes_a_model_that_encrypts_and_decrypts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm"):
        shutil.copy(get_testdata_file(name), source / name)
    out = tmp_path / "site-model"
    code = main(["train", str(source), "--out", str(out), "--steps", "12", "--validation-share", "0.5",
                 "--threads", "1", "--model-id", "site-test@1"])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"model.json", "model.pt", "model.md", "loss.png", "checkpoint.pt"}
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")
    meta = json.loads((out / "model.json").read_text())
    assert meta["model_id"] == "site-test@1" and meta["arch"] == "ps-ae"
    assert len(meta["validation"]) == 1 and "Validation quality" in (out / "model.md").read_text()
    train_files, validation_files = meta["training"]["train_files"], meta["training"]["validation_files"]
    assert len(train_files) == 1 and len(validation_files) == 1 and not set(train_files) & set(validation_files)

    registry.clear_cache()
    ds = pydicom.dcmread(source / "CT_small.dcm")
    key = Key.generate()
    encrypted = encrypt_instance(ds, key=key, mode="lossless", model=str(out))
    assert encrypted.mode == "lossless"
    restored = decrypt_instance(encrypted.dataset, keys=key)  # by id: its folder was loaded in this process
    assert np.array_equal(restored.dataset.pixel_array, ds.pixel_array)

    registry.clear_cache()  # a fresh receiver finds the site model through $DICOMCRYPT_MODELS
    with pytest.raises(Exception, match="unknown model site-test@1"):
        decrypt_instance(encrypted.dataset, keys=key)
    monkeypatch.setenv(registry.MODELS_ENV, str(tmp_path))
    restored = decrypt_instance(encrypted.dataset, keys=key)
    assert np.array_equal(restored.dataset.pixel_array, ds.pixel_array)
    registry.clear_cache()


def test_recipe_follows_the_starting_point_and_takes_overrides() -> None:
    haar = training.TrainConfig.recipe("ps-ae")
    assert (haar.learning_rate, haar.noise_share, haar.noise_loss_weight, haar.steps) == (3e-4, 0.2, 0.03, 1000)
    assert haar.noise_kinds.count("salt_and_pepper") == 2
    random_start = training.TrainConfig.recipe("ps-ae", "random")
    assert (random_start.learning_rate, random_start.noise_loss_weight) == (3e-3, 1.0)
    assert training.TrainConfig.recipe("paper-ae").learning_rate == 3e-3
    assert training.TrainConfig.recipe("ps-ae", steps=7, learning_rate=1e-3).steps == 7
    with pytest.raises(TrainingError, match="not available for paper-ae"):
        training.TrainConfig.recipe("paper-ae", "haar")


def test_cli_train_refuses_an_init_the_architecture_does_not_offer(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(tmp_path), "--out", str(tmp_path / "m"), "--arch", "paper-ae", "--init", "haar"])
    assert code == 2 and "not available for paper-ae" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
