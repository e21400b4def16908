"""The library batch runner without the CLI: planning, typed jobs that pickle with their keys,
the worker's rules for one task, and the local pool (in-process and spawned processes)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from helpers.corpus import TEST_FILES_DIR, read_quietly
from helpers.identity import make_identity

from dicomcrypt.cli import _targets
from dicomcrypt.crypto import Key, KeyRing, RecipientKey
from dicomcrypt.crypto.cms import IdentityKey
from dicomcrypt.errors import InvalidInputError
from dicomcrypt.files import read_dicom
from dicomcrypt.identity_protection import IdentityProtection
from dicomcrypt.runner import DecryptJob, EncryptJob, LocalPool, RekeyJob, Task, Worker, guard_inputs, plan
from dicomcrypt.settings import LATENT_FORMATS, EncryptionSettings


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate()


def _tree(root: Path, names: tuple[str, ...] = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")) -> Path:
    root.mkdir(parents=True)
    for name in names:
        shutil.copyfile(TEST_FILES_DIR / name, root / name)
    return root


# --------------------------------------------------------------------------- planning


def test_plan_mirrors_the_tree_and_carries_overwrite(tmp_path: Path):
    src = _tree(tmp_path / "in")
    tasks = plan(src, tmp_path / "out", overwrite=True)
    assert sorted(t.rel for t in tasks) == ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]
    assert all(t.overwrite and Path(t.dst) == tmp_path / "out" / t.rel for t in tasks)
    assert plan(src / "CT_small.dcm", str(tmp_path / "out") + "/")[0].dst == str(tmp_path / "out" / "CT_small.dcm")


@pytest.mark.parametrize("out", ["in", "in/sub"])
def test_plan_refuses_out_inside_in(tmp_path: Path, out: str):
    src = _tree(tmp_path / "in")
    with pytest.raises(InvalidInputError, match="inside input"):
        plan(src, tmp_path / out)


def test_guard_inputs_refuses_an_output_onto_an_input(tmp_path: Path):
    src = _tree(tmp_path / "in")
    tasks = [Task(str(src / "CT_small.dcm"), "a", str(src / "MR_small.dcm")),
             Task(str(src / "MR_small.dcm"), "b", str(tmp_path / "out.dcm"))]
    ok, refused = guard_inputs(tasks)
    assert [t.rel for t in ok] == ["b"] and [r.rel for r in refused] == ["a"]
    assert "is an input file" in refused[0].error


# --------------------------------------------------------------------------- jobs


def test_jobs_pickle_with_their_keys_and_one_uid_secret(tmp_path: Path, key: Key):
    identity = make_identity(tmp_path / "pki", "restorer")
    node = RecipientKey.generate()
    settings = EncryptionSettings.build(key=key, recipients=[node.recipient], mode="standard", latent_format="f16",
                                        protect_identity=IdentityProtection.load([identity.cert]))
    job = pickle.loads(pickle.dumps(EncryptJob(settings)))
    assert job.settings.key_ids == settings.key_ids and job.settings.latent_format == "f16"
    assert job.settings.identity.uid_secret == settings.identity.uid_secret  # every worker: the same UIDs

    ring = KeyRing([key, node])
    decrypt = pickle.loads(pickle.dumps(DecryptJob(ring, (IdentityKey.load(identity.key),))))
    assert decrypt.keys.key_ids == ring.key_ids
    assert decrypt.identity_keys[0].fingerprint == IdentityKey.load(identity.key).fingerprint
    rekey = pickle.loads(pickle.dumps(RekeyJob(ring, (node.recipient,), keep=True)))
    assert rekey.to == (node.recipient,) and rekey.keep


def test_cli_latent_choices_are_the_settings_formats():
    assert _targets.LATENT_FORMATS == LATENT_FORMATS


# --------------------------------------------------------------------------- worker and pool


def test_worker_skips_existing_outputs_unless_overwrite(tmp_path: Path, key: Key):
    src = _tree(tmp_path / "in", ("CT_small.dcm",))
    out = tmp_path / "out.dcm"
    out.write_bytes(b"precious")
    worker = Worker(EncryptJob(EncryptionSettings.build(key=key, mode="standard")))
    skipped = worker.run(Task(str(src / "CT_small.dcm"), "CT_small.dcm", str(out)))
    assert skipped.status == "skipped" and out.read_bytes() == b"precious"
    done = worker.run(Task(str(src / "CT_small.dcm"), "CT_small.dcm", str(out), overwrite=True))
    assert done.status == "done" and done.mode == "standard" and read_dicom(out).SOPInstanceUID


@pytest.mark.parametrize("workers", [1, 2])
def test_local_pool_yields_a_result_per_task(tmp_path: Path, key: Key, workers: int):
    src = _tree(tmp_path / "in")
    (src / "notes.txt").write_text("not DICOM\n")
    job = EncryptJob(EncryptionSettings.build(key=key, mode="standard"))
    results = {r.rel: r for r in LocalPool(workers).run(job, plan(src, tmp_path / "enc"))}
    assert {rel: r.status for rel, r in results.items()} == {
        "CT_small.dcm": "done", "MR_small.dcm": "done", "rtplan.dcm": "passed", "notes.txt": "failed"
    }
    decrypt_plan = plan(tmp_path / "enc", tmp_path / "dec")
    restored = {r.rel: r for r in LocalPool(workers).run(DecryptJob(KeyRing([key])), decrypt_plan)}
    assert restored["CT_small.dcm"].status == "done"
    assert (read_dicom(tmp_path / "dec" / "CT_small.dcm").pixel_array
            == read_quietly(src / "CT_small.dcm").pixel_array).all()
