"""The command line, called in-process (``main([...])``) over a small folder tree.

Most runs use ``--jobs 1`` (in-process, fast, debuggable); one uses ``--jobs 2`` to exercise
the process pool, and one a subprocess to prove ``inspect`` never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.cli.main import main
from dicomcrypt.errors import InvalidInputError, NotDicomError, OutputExistsError
from dicomcrypt.files import iter_dicom_inputs, read_dicom, write_dicom_atomic
from dicomcrypt.runner.manifest import MANIFEST_NAME

IMAGES = {"ct/CT_small.dcm": "CT_small.dcm", "mr/sub/MR_small.dcm": "MR_small.dcm"}
PASS_THROUGH = {"plan/rtplan.dcm": "rtplan.dcm"}


# --------------------------------------------------------------------------- helpers


def _make_tree(root: Path, *, text_file: bool = True) -> Path:
    """IN: two small images, an RT Plan (pass-through), a text file, hidden clutter."""
    for rel, name in {**IMAGES, **PASS_THROUGH}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_testdata_file(name), root / rel)
    if text_file:
        (root / "notes.txt").write_text("not a DICOM file\n")
    (root / ".DS_Store").write_bytes(b"\0" * 10)
    (root / ".git").mkdir()
    (root / ".git" / "x.dcm").write_bytes(b"hidden folder")
    return root


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _files(root: Path) -> set[str]:
    """The files under OUT, without the job manifest (its own tests are tests/runner/test_manifest.py)."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not _is_manifest(p)}


def _is_manifest(path: Path) -> bool:
    return path.name.startswith(MANIFEST_NAME)


def _keygen(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["keygen", "--out", str(path)]) == 0
    return capsys.readouterr().out.strip()


@pytest.fixture
def key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    path = tmp_path / "keys" / "site.key"
    path.parent.mkdir()
    return path, _keygen(path, capsys)


# --------------------------------------------------------------------------- parser, keygen


def test_version_and_usage_errors(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("dicomcrypt ")
    assert main([]) == 2
    assert main(["encrypt", "--key", "k", "a", "b", "--jobs", "0"]) == 2
    assert main(["encrypt", "--key", "k", "--mode", "lossy", "--lossy", "a", "b"]) == 2
    assert "must be 1 or more" in capsys.readouterr().err


def test_keygen_writes_0600_file_and_prints_its_key_id(tmp_path, capsys):
    from dicomcrypt.crypto import Key

    path = tmp_path / "site.key"
    key_id = _keygen(path, capsys)
    assert key_id == Key.load(path).key_id and len(key_id) == 16
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    assert main(["keygen", "--out", str(path)]) == 3  # never overwritten
    assert "exists" in capsys.readouterr().err
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- the round trip


def test_encrypt_inspect_decrypt_tree(tmp_path, key, capsys):
    key_path, key_id = key
    src = _make_tree(tmp_path / "in")
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    before = _hashes(src)

    # encrypt: the text file fails, the rest is done, the batch goes on
    assert main(["encrypt", "--key", str(key_path), "--jobs", "1", "-v", str(src), str(enc)]) == 1
    out = capsys.readouterr().out
    assert "4 files" in out and "2 encrypted, 1 passed through, 0 skipped, 1 failed" in out
    assert "failed (1):\n  notes.txt: not a DICOM file" in out
    assert "modes: lossless 2" in out
    assert _files(enc) == {*IMAGES, *PASS_THROUGH}  # mirrored; nothing for notes.txt, no temp files
    assert (enc / "plan/rtplan.dcm").read_bytes() == (src / "plan/rtplan.dcm").read_bytes()
    for rel in IMAGES:  # the pixels are gone: a placeholder stands in
        assert not np.array_equal(pydicom.dcmread(enc / rel).pixel_array, pydicom.dcmread(src / rel).pixel_array)

    # inspect: no key needed; shows what is inside
    assert main(["inspect", str(enc)]) == 0
    out = capsys.readouterr().out
    assert out.count(": encrypted") == 2 and key_id in out and "lossless" in out
    assert "rtplan.dcm: not encrypted, RTPLAN" in out
    assert main(["inspect", "--json", str(enc), str(src / "notes.txt")]) == 1  # a non-DICOM file
    records = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert records["CT_small.dcm"]["status"] == "encrypted"
    assert records["CT_small.dcm"]["key_ids"] == [key_id]
    assert records["CT_small.dcm"]["mode"] == "lossless"
    assert records["CT_small.dcm"]["envelope_bytes"] > 0
    assert records["rtplan.dcm"]["status"] == "not encrypted"
    assert records["notes.txt"]["status"] == "not dicom"

    # decrypt: identical pixels, mode reported, pass-through copied
    assert main(["decrypt", "--key", str(key_path.parent), "--jobs", "1", "-v", str(enc), str(dec)]) == 0
    out = capsys.readouterr().out
    assert "2 decrypted, 1 passed through, 0 skipped, 0 failed" in out
    assert "digest verified" in out
    assert _files(dec) == {*IMAGES, *PASS_THROUGH}
    for rel in IMAGES:
        restored, original = pydicom.dcmread(dec / rel), pydicom.dcmread(src / rel)
        assert np.array_equal(restored.pixel_array, original.pixel_array)
        assert restored.SOPInstanceUID == original.SOPInstanceUID
    assert (dec / "plan/rtplan.dcm").read_bytes() == (src / "plan/rtplan.dcm").read_bytes()

    assert _hashes(src) == before  # inputs never modified


@pytest.mark.slow
def test_parallel_jobs(tmp_path, key, capsys):
    key_path, _ = key
    src = _make_tree(tmp_path / "in", text_file=False)
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    args = ["--key", str(key_path), "--jobs", "2", "--no-progress"]
    assert main(["encrypt", *args, "--mode", "standard", str(src), str(enc)]) == 0
    assert "2 encrypted, 1 passed through, 0 skipped, 0 failed" in capsys.readouterr().out
    assert main(["decrypt", *args, str(enc), str(dec)]) == 0
    assert "modes: standard 2" in capsys.readouterr().out
    for rel in IMAGES:
        assert np.array_equal(pydicom.dcmread(dec / rel).pixel_array, pydicom.dcmread(src / rel).pixel_array)


def test_lossy_reports_a_derived_instance(tmp_path, key, capsys):
    key_path, _ = key
    src = tmp_path / "CT_small.dcm"
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["encrypt", "--key", str(key_path), "--lossy", "-q", str(src), str(out_dir)]) == 0
    assert capsys.readouterr().out == ""  # -q: silent on success
    assert main(["inspect", str(out_dir / "CT_small.dcm")]) == 0
    assert "lossy" in capsys.readouterr().out
    restored = tmp_path / "restored.dcm"
    assert main(["decrypt", "--key", str(key_path), "-v", str(out_dir / "CT_small.dcm"), str(restored)]) == 0
    assert "[lossy]" in capsys.readouterr().out
    ds, original = read_dicom(restored), read_dicom(src)
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert ds.pixel_array.shape == original.pixel_array.shape


# --------------------------------------------------------------------------- refusals and failures


def test_existing_output_is_skipped_without_force(tmp_path, key, capsys):
    key_path, _ = key
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src / "a.dcm")
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "a.dcm").write_bytes(b"precious")
    args = ["encrypt", "--key", str(key_path), "--jobs", "1", "--mode", "standard", str(src), str(enc)]
    assert main(args) == 0
    assert "0 encrypted, 0 passed through, 1 skipped, 0 failed" in capsys.readouterr().out
    assert (enc / "a.dcm").read_bytes() == b"precious"
    assert main([*args, "--force"]) == 0
    assert "1 encrypted" in capsys.readouterr().out
    assert read_dicom(enc / "a.dcm").SOPInstanceUID == read_dicom(src / "a.dcm").SOPInstanceUID


def test_wrong_key_fails_naming_the_needed_key_and_leaves_nothing(tmp_path, key, capsys):
    key_path, key_id = key
    other = tmp_path / "other.key"
    other_id = _keygen(other, capsys)
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src / "a.dcm")
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert main(["encrypt", "--key", str(key_path), "--jobs", "1", "--mode", "standard", str(src), str(enc)]) == 0
    capsys.readouterr()
    assert main(["decrypt", "--key", str(other), "--jobs", "1", str(enc), str(dec)]) == 1
    out = capsys.readouterr().out
    assert "0 decrypted, 0 passed through, 0 skipped, 1 failed" in out
    assert f"a.dcm: no key for key id {key_id}" in out and other_id in out
    assert not dec.exists() or not any(p for p in dec.rglob("*") if not _is_manifest(p))  # no output, no temp file


def test_internal_errors_are_reported_and_the_batch_goes_on(tmp_path, key, capsys, monkeypatch):
    from dicomcrypt import pipeline

    key_path, _ = key
    src = _make_tree(tmp_path / "in", text_file=False)

    def broken(ds, **kwargs):
        if ds.Modality == "MR":
            raise RuntimeError("boom")
        return real(ds, **kwargs)

    real = pipeline.encrypt_instance
    monkeypatch.setattr(pipeline, "encrypt_instance", broken)
    enc = tmp_path / "enc"
    assert main(["encrypt", "--key", str(key_path), "--jobs", "1", "--mode", "standard", str(src), str(enc)]) == 1
    out = capsys.readouterr().out
    assert "1 encrypted, 1 passed through, 0 skipped, 1 failed" in out
    assert "mr/sub/MR_small.dcm: internal error: RuntimeError: boom" in out
    assert _files(enc) == {"ct/CT_small.dcm", "plan/rtplan.dcm"}


@pytest.mark.parametrize("out_rel", ["in", "in/enc", "in/ct/deeper"])
def test_out_inside_in_is_refused(tmp_path, key, capsys, out_rel):
    key_path, _ = key
    src = _make_tree(tmp_path / "in", text_file=False)
    before = _hashes(src)
    assert main(["encrypt", "--key", str(key_path), str(src), str(tmp_path / out_rel)]) == 3
    assert "inside input" in capsys.readouterr().err
    assert _hashes(src) == before


def test_nothing_starts_without_input_or_key(tmp_path, key, capsys):
    key_path, _ = key
    assert main(["encrypt", "--key", str(key_path), str(tmp_path / "nope"), str(tmp_path / "o")]) == 3
    assert "no such file or folder" in capsys.readouterr().err
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key\n")
    bad_key.chmod(0o600)
    src = _make_tree(tmp_path / "in")
    assert main(["encrypt", "--key", str(bad_key), str(src), str(tmp_path / "o")]) == 3
    assert "bad.key" in capsys.readouterr().err
    assert main(["decrypt", "--key", str(tmp_path / "missing.key"), str(src), str(tmp_path / "o")]) == 3
    assert not (tmp_path / "o").exists()


def test_single_file_into_a_folder_and_onto_itself(tmp_path, key, capsys):
    key_path, _ = key
    src = tmp_path / "CT_small.dcm"
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src)
    assert main(["encrypt", "--key", str(key_path), "--mode", "standard", str(src), str(tmp_path / "out") + "/"]) == 0
    assert (tmp_path / "out" / "CT_small.dcm").is_file()
    assert main(["encrypt", "--key", str(key_path), str(src), str(src)]) == 3
    assert "is the input file" in capsys.readouterr().err


_CRASH_SCRIPT = """
import os, sys
from pathlib import Path
from dicomcrypt.runner import worker
from dicomcrypt.crypto import Key

def fake(self, task, started):  # top level: spawn workers run it too
    src, dst = Path(task.src), Path(task.dst)
    if src.name == "3.dcm":
        os._exit(9)  # what a segfault in a native decoder looks like to the pool
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(b"ok")
    return worker.FileResult(task.rel, "done", action="encrypted", mode="standard")

def cannot_start(self, job):
    raise RuntimeError("no worker today")

worker.Worker._process = fake
if sys.argv[4] == "broken-init":
    worker.Worker.__init__ = cannot_start

if __name__ == "__main__":
    from dicomcrypt.cli.main import main
    key = Path(sys.argv[1]) / "real.key"
    Key.generate().save(key)
    sys.exit(main(["encrypt", "--key", str(key), "--jobs", "2", sys.argv[2], sys.argv[3]]))
"""


@pytest.mark.parametrize("case", ["crash", "broken-init"])
@pytest.mark.slow
def test_a_worker_that_dies_fails_only_its_file(tmp_path, case):
    """A native crash in one file (simulated by os._exit) costs that file, not the batch;
    workers that cannot start at all end the batch instead of looping."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        (src / f"{i}.dcm").write_bytes(b"x")
    script = tmp_path / "crash.py"
    script.write_text(_CRASH_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(src), str(tmp_path / "out"), case],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1, run.stderr
    if case == "crash":
        assert "5 encrypted, 0 passed through, 0 skipped, 1 failed" in run.stdout
        assert "3.dcm: internal error: the worker process died" in run.stdout
        assert _files(tmp_path / "out") == {f"{i}.dcm" for i in range(6) if i != 3}
    else:
        assert "0 encrypted, 0 passed through, 0 skipped, 6 failed" in run.stdout
        assert run.stdout.count("not started: worker processes cannot start") == 6

_SLOW_SCRIPT = """
import sys, time
from pathlib import Path
from dicomcrypt.atomic import write_atomic
from dicomcrypt.runner import worker
from dicomcrypt.crypto import Key

def slow(self, task, started):  # top level: spawn workers run it too
    time.sleep(0.5)
    write_atomic(Path(task.dst), b"ok")
    return worker.FileResult(task.rel, "done", action="encrypted", mode="standard")

worker.Worker._process = slow

if __name__ == "__main__":
    from dicomcrypt.cli.main import main
    key = Path(sys.argv[1]) / "real.key"
    Key.generate().save(key)
    sys.exit(main(["encrypt", "--key", str(key), "--jobs", "2", sys.argv[2], sys.argv[3]]))
"""


def test_ctrl_c_lets_running_files_finish_and_exits_130(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it): queued files are not
    started, running ones finish and are reported, every output on disk is complete."""
    import signal
    import time

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(40):
        (src / f"{i:02}.dcm").write_bytes(b"x")
    script = tmp_path / "slow.py"
    script.write_text(_SLOW_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(src), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 90
    while not (out.exists() and _files(out)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "(interrupted: the rest was not started)" in stdout
    written = sorted(p for p in out.iterdir() if not _is_manifest(p))
    assert 0 < len(written) < 40 and all(p.read_bytes() == b"ok" for p in written)
    assert f"{len(written)} encrypted, 0 passed through, 0 skipped, 0 failed" in stdout



def test_inspect_never_imports_torch(tmp_path, key, capsys):
    key_path, _ = key
    src = tmp_path / "CT_small.dcm"
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src)
    assert main(["encrypt", "--key", str(key_path), "--mode", "standard", str(src), str(tmp_path / "enc.dcm")]) == 0
    code = (
        "import sys; from dicomcrypt.cli.main import main; "
        f"rc = main(['inspect', {str(tmp_path / 'enc.dcm')!r}, {str(src)!r}]); "
        "assert 'torch' not in sys.modules, 'inspect imported torch'; sys.exit(rc)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "enc.dcm: encrypted" in run.stdout and "CT_small.dcm: not encrypted, CT" in run.stdout


def test_python_dash_m(tmp_path):
    run = subprocess.run([sys.executable, "-m", "dicomcrypt", "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("dicomcrypt ")


# --------------------------------------------------------------------------- dicomcrypt.files


def test_read_dicom_names_the_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(NotDicomError, match=r"notes\.txt: not a DICOM file \(expected a DICOM Part 10 file"):
        read_dicom(text)
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_dicom(tmp_path / "missing.dcm")
    damaged = tmp_path / "damaged.dcm"
    damaged.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes()[:200])
    with pytest.raises(NotDicomError, match="damaged.dcm"):
        read_dicom(damaged)


def test_write_dicom_atomic(tmp_path, monkeypatch):
    ds = read_dicom(get_testdata_file("CT_small.dcm"))
    target = tmp_path / "a" / "b" / "out.dcm"
    write_dicom_atomic(ds, target)  # creates parents
    assert read_dicom(target).SOPInstanceUID == ds.SOPInstanceUID
    with pytest.raises(OutputExistsError):
        write_dicom_atomic(ds, target)
    write_dicom_atomic(ds, target, force=True)

    # a failure half-way leaves neither the output nor a temp file
    def exploding(fh, dataset, **kwargs):
        fh.write(b"\0" * 1000)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pydicom, "dcmwrite", exploding)
    with pytest.raises(RuntimeError):
        write_dicom_atomic(ds, tmp_path / "a" / "b" / "other.dcm")
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.dcm"]


def test_write_dicom_atomic_syncs_file_meta_with_a_new_uid(tmp_path):
    ds = read_dicom(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    write_dicom_atomic(ds, tmp_path / "x.dcm")
    assert read_dicom(tmp_path / "x.dcm").file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_iter_dicom_inputs(tmp_path):
    root = _make_tree(tmp_path / "in")
    (root / "DICOMDIR").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.dcm").write_bytes(b"x")
    if os.name == "posix":
        os.symlink(tmp_path / "elsewhere", root / "linked-folder")  # not descended
        os.symlink(root / "ct" / "CT_small.dcm", root / "link.dcm")  # followed
    rels = [rel.as_posix() for _path, rel in iter_dicom_inputs(root)]
    expected = ["DICOMDIR", "ct/CT_small.dcm", "mr/sub/MR_small.dcm", "notes.txt", "plan/rtplan.dcm"]
    if os.name == "posix":
        expected.insert(2, "link.dcm")
    assert rels == expected
    single = root / "ct" / "CT_small.dcm"
    assert list(iter_dicom_inputs(single)) == [(single, Path("CT_small.dcm"))]
    with pytest.raises(InvalidInputError):
        list(iter_dicom_inputs(tmp_path / "missing"))


def test_dicomdir_is_skipped_and_said_so(tmp_path, key, capsys):
    key_path, _ = key
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(get_testdata_file("DICOMDIR"), src / "DICOMDIR")
    assert main(["encrypt", "--key", str(key_path), "--jobs", "1", str(src), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "1 skipped" in out and "DICOMDIR not copied" in out
