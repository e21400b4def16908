"""The job manifest in OUT: resume after Ctrl-C without redoing finished files, retries of failed
ones, redoing a damaged output, refusing another job's OUT, and nothing secret in the file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.cli._common import plural
from dicomcrypt.cli.main import main
from dicomcrypt.crypto import Key
from dicomcrypt.runner import EncryptJob, Manifest, Task, job_identity
from dicomcrypt.runner.manifest import ALREADY_DONE_NOTE, MANIFEST_NAME, output_complete
from dicomcrypt.settings import EncryptionSettings

IMAGES = {"ct/CT_small.dcm": "CT_small.dcm", "mr/MR_small.dcm": "MR_small.dcm"}
PATIENT_NAMES = (b"CompressedSamples^CT1", b"CompressedSamples^MR1")


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "site.key"
    Key.generate().save(path)
    return path


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for rel, name in IMAGES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_testdata_file(name), root / rel)
    return root


def _encrypt(key: Path, src: Path, out: Path, *extra: str) -> int:
    return main(["encrypt", "--key", str(key), "--mode", "standard", "--jobs", "1", *extra, str(src), str(out)])


def _status(out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["jobs", "status", "--json", str(out)]) == 0
    status: dict[str, object] = json.loads(capsys.readouterr().out)
    return status


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every output: a file redone atomically gets a new inode."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(MANIFEST_NAME)
    }


# --------------------------------------------------------------------------- resume after Ctrl-C

_SLOW_SCRIPT = """
import sys, time
from pathlib import Path
from dicomcrypt.files import copy_file_atomic
from dicomcrypt.runner import worker
from dicomcrypt.crypto import Key

def slow(self, task, started):  # top level: spawn workers run it too
    time.sleep(0.3)
    copy_file_atomic(Path(task.src), Path(task.dst), force=task.overwrite)
    size = Path(task.dst).stat().st_size
    return worker.FileResult(task.rel, "done", action="encrypted", mode="standard", bytes_in=size, bytes_out=size)

worker.Worker._process = slow

if __name__ == "__main__":
    from dicomcrypt.cli.main import main
    sys.exit(main(["encrypt", "--key", sys.argv[1], "--jobs", "2", sys.argv[2], sys.argv[3]]))
"""


def _run_slow(script: Path, key: Path, src: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(script), str(key), str(src), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow
def test_ctrl_c_then_the_same_command_resumes_without_redoing_finished_files(tmp_path, key, capsys):
    src, out = tmp_path / "many", tmp_path / "out"
    src.mkdir()
    for i in range(24):
        shutil.copyfile(get_testdata_file("CT_small.dcm"), src / f"{i:02}.dcm")
    script = tmp_path / "slow.py"
    script.write_text(_SLOW_SCRIPT)

    proc = _run_slow(script, key, src, out)
    deadline = time.monotonic() + 90
    while not (out.exists() and _stamps(out)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    first = _stamps(out)
    assert 0 < len(first) < 24
    status = _status(out, capsys)
    assert status["counts"] == {"done": len(first), "passed": 0, "skipped": 0, "failed": 0,
                                "left": 24 - len(first), "total": 24}

    proc = _run_slow(script, key, src, out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"{24 - len(first)} encrypted, 0 passed through, {len(first)} skipped, 0 failed" in stdout
    assert f"{plural(len(first), 'file')}: {ALREADY_DONE_NOTE}" in stdout
    second = _stamps(out)
    assert len(second) == 24
    assert {rel: second[rel] for rel in first} == first  # finished files untouched: same inode, same mtime
    assert _status(out, capsys)["counts"] == {"done": 24, "passed": 0, "skipped": 0, "failed": 0,
                                              "left": 0, "total": 24}


# --------------------------------------------------------------------------- retry, redo, refuse


def test_a_failed_file_is_retried_and_the_others_are_not_redone(tmp_path, key, src, capsys, monkeypatch):
    from dicomcrypt import pipeline

    real = pipeline.encrypt_instance

    def broken(ds, **kwargs):
        if ds.Modality == "MR":
            raise RuntimeError("boom")
        return real(ds, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(pipeline, "encrypt_instance", broken)
    assert _encrypt(key, src, out) == 1
    assert _status(out, capsys)["failed"] == [
        {"path": "mr/MR_small.dcm", "error": "internal error: RuntimeError: boom", "attempts": 1}
    ]
    done = _stamps(out)
    monkeypatch.setattr(pipeline, "encrypt_instance", real)

    capsys.readouterr()
    assert _encrypt(key, src, out) == 0
    assert "1 encrypted, 0 passed through, 1 skipped, 0 failed" in capsys.readouterr().out
    assert _stamps(out)["ct/CT_small.dcm"] == done["ct/CT_small.dcm"]
    status = _status(out, capsys)
    assert status["counts"]["done"] == 2 and status["failed"] == []


def test_a_truncated_output_recorded_as_done_is_redone(tmp_path, key, src, capsys):
    out = tmp_path / "out"
    assert _encrypt(key, src, out) == 0
    damaged = out / "mr" / "MR_small.dcm"
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[: len(whole) // 2])
    assert not output_complete(damaged, len(whole))
    kept = _stamps(out)["ct/CT_small.dcm"]

    capsys.readouterr()
    assert _encrypt(key, src, out) == 0
    assert "1 encrypted, 0 passed through, 1 skipped, 0 failed" in capsys.readouterr().out
    assert output_complete(damaged, None) and damaged.stat().st_size == len(whole)
    assert _stamps(out)["ct/CT_small.dcm"] == kept
    assert main(["decrypt", "--key", str(key), "--jobs", "1", str(out), str(tmp_path / "dec")]) == 0


def test_a_changed_input_is_redone(tmp_path, key, src, capsys):
    out = tmp_path / "out"
    assert _encrypt(key, src, out) == 0
    before = _stamps(out)
    os.utime(src / "ct" / "CT_small.dcm", ns=(1, 1))
    capsys.readouterr()
    assert _encrypt(key, src, out) == 0
    assert "1 encrypted, 0 passed through, 1 skipped, 0 failed" in capsys.readouterr().out
    after = _stamps(out)
    assert after["ct/CT_small.dcm"] != before["ct/CT_small.dcm"]
    assert after["mr/MR_small.dcm"] == before["mr/MR_small.dcm"]


def test_force_redoes_everything_and_rewrites_the_rows(tmp_path, key, src, capsys):
    out = tmp_path / "out"
    assert _encrypt(key, src, out) == 0
    before = _stamps(out)
    capsys.readouterr()
    assert _encrypt(key, src, out, "--force") == 0
    assert "2 encrypted, 0 passed through, 0 skipped, 0 failed" in capsys.readouterr().out
    after = _stamps(out)
    assert all(after[rel][0] != before[rel][0] for rel in before)  # replaced: new inodes
    assert [f["attempts"] for f in _status_rows(out)] == [2, 2]


def _status_rows(out: Path) -> list[dict[str, object]]:
    import sqlite3

    with sqlite3.connect(out / MANIFEST_NAME) as db:
        return [{"rel": r, "attempts": a} for r, a in db.execute("SELECT rel, attempts FROM files ORDER BY rel")]


def test_another_job_against_the_same_out_is_refused(tmp_path, key, src, capsys):
    out = tmp_path / "out"
    assert _encrypt(key, src, out) == 0
    before = _stamps(out)
    capsys.readouterr()
    assert main(["encrypt", "--key", str(key), "--mode", "lossy", "--jobs", "1", str(src), str(out)]) == 3
    err = capsys.readouterr().err
    assert "holds the output of another job" in err and "differs in: mode" in err
    assert f"delete {out / MANIFEST_NAME}" in err
    other = tmp_path / "other"
    shutil.copytree(src, other)
    assert _encrypt(key, other, out) == 3
    assert "differs in: input" in capsys.readouterr().err
    assert main(["decrypt", "--key", str(key), "--jobs", "1", str(src), str(out)]) == 3
    assert _stamps(out) == before


def test_the_manifest_holds_no_key_material_and_no_patient_data(tmp_path, key, src, capsys):
    out = tmp_path / "out"
    assert _encrypt(key, src, out) == 0
    assert main(["rekey", "--key", str(key), "--to", str(key), "--jobs", "1", str(out), str(tmp_path / "re")]) == 0
    secret = Key.load(key)._secret
    token = key.read_text().split("DICOMCRYPT-KEY-1 ")[1].split()[0]
    for manifest in (out / MANIFEST_NAME, tmp_path / "re" / MANIFEST_NAME):
        data = b"".join(p.read_bytes() for p in manifest.parent.glob(MANIFEST_NAME + "*"))
        assert b"CT_small.dcm" in data  # paths and outcomes are there
        for needle in (secret, secret.hex().encode(), token.encode(), *PATIENT_NAMES):
            assert needle not in data


def test_a_single_file_keeps_no_manifest(tmp_path, key, src):
    out = tmp_path / "out"
    out.mkdir()
    assert _encrypt(key, src / "ct" / "CT_small.dcm", out) == 0
    assert [p.name for p in out.iterdir()] == ["CT_small.dcm"]


def test_the_library_manifest_plans_and_records(tmp_path, key, src):
    job = EncryptJob(EncryptionSettings.build(key=Key.load(key), mode="standard"))
    identity = job_identity(job, src)
    assert identity["targets"] == [Key.load(key).key_id] and identity["mode"] == "standard"
    tasks = [Task(str(src / rel), rel, str(tmp_path / "out" / rel)) for rel in IMAGES]
    manifest = Manifest.open(tmp_path / "out", identity)
    to_run, finished = manifest.plan(tasks, force=False)
    assert to_run == tasks and finished == []
    manifest.close()
    status = Manifest.read(tmp_path / "out").status()
    assert status.counts["left"] == 2 and status.identity == json.loads(json.dumps(identity))


def test_an_out_where_the_manifest_cannot_be_written_runs_without_it_and_says_so(tmp_path, key, src, capsys):
    from helpers.disks import read_only_disk

    with read_only_disk(tmp_path / "out") as out:
        assert _encrypt(key, src, out) == 1  # each file: cannot write (as without a manifest)
        captured = capsys.readouterr()
        assert not (out / MANIFEST_NAME).exists()
    assert f"warning: cannot keep the job manifest {out / MANIFEST_NAME}" in captured.err
    assert "going on without it" in captured.err and "Traceback" not in captured.err
    assert "2 failed" in captured.out
