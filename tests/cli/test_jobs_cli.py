"""``dicomcrypt jobs status OUT``: counts, failures, the job identity (no key material), --json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.cli.main import main
from dicomcrypt.crypto import Key
from dicomcrypt.runner import EncryptJob, Manifest, Task, job_identity
from dicomcrypt.runner.manifest import MANIFEST_NAME
from dicomcrypt.settings import EncryptionSettings


@pytest.fixture
def job_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    """An encrypt of 2 images, an RT Plan (passed through) and a text file (failed), then one
    more planned input not run yet (as after Ctrl-C)."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        shutil.copyfile(get_testdata_file(name), src / name)
    (src / "notes.txt").write_text("not DICOM\n")
    key = tmp_path / "site.key"
    secret = Key.generate()
    secret.save(key)
    out = tmp_path / "out"
    assert main(["encrypt", "--key", str(key), "--mode", "standard", "--jobs", "1", str(src), str(out)]) == 1
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src / "later.dcm")
    job = EncryptJob(EncryptionSettings.build(key=secret, mode="standard"))
    manifest = Manifest.open(out, job_identity(job, src))
    manifest.plan([Task(str(src / "later.dcm"), "later.dcm", str(out / "later.dcm"))], force=False)
    manifest.close()
    capsys.readouterr()
    return out, secret.key_id


def test_status_counts_failures_and_identity(job_out, capsys):
    out, key_id = job_out
    assert main(["jobs", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"job: encrypt of {out.parent / 'in'}" in text
    assert "mode standard" in text and f"targets {key_id}" in text
    assert "files: 5: 2 done, 1 passed, 0 skipped, 1 failed, 1 left" in text
    assert "failed (1):\n  notes.txt: not a DICOM file" in text and "(attempts: 1)" in text
    assert "started 20" in text and "last updated 20" in text


def test_status_json(job_out, capsys):
    out, key_id = job_out
    assert main(["jobs", "status", "--json", str(out)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"done": 2, "passed": 1, "skipped": 0, "failed": 1, "left": 1, "total": 5}
    assert status["job"]["operation"] == "encrypt" and status["job"]["targets"] == [key_id]
    assert status["job"]["mode"] == "standard"
    assert [f["path"] for f in status["failed"]] == ["notes.txt"]
    assert status["failed"][0]["error"].startswith("not a DICOM file")
    assert status["manifest"] == str(out / MANIFEST_NAME)
    assert status["started"] <= status["updated"]


def test_a_missing_manifest_is_a_clear_error(tmp_path, capsys):
    assert main(["jobs", "status", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert f"no job manifest in {tmp_path}" in err and "Traceback" not in err
    assert main(["jobs", "status", "--json", str(tmp_path / "nowhere")]) == 3
    assert main(["jobs"]) == 2
