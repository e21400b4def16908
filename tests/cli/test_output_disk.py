"""A full or read-only output disk is a clear per-file error, never a traceback.

``encrypt``/``decrypt`` report "cannot write OUT/...: no space left on device" (or "read-only
file system") for each file and go on; nothing half-written is left. Real disks: a tmpfs of a
few kilobytes, or mounted read-only (``helpers.disks``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomcrypt.cli.main import main
from dicomcrypt.crypto import Key
from dicomcrypt.runner.manifest import MANIFEST_NAME
from helpers.disks import full_disk, read_only_disk

NAMES = ("CT_small.dcm", "MR_small.dcm")


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """IN with two small images, and a key file."""
    src = tmp_path / "in"
    src.mkdir()
    for name in NAMES:
        shutil.copyfile(get_testdata_file(name), src / name)
    key = tmp_path / "site.key"
    Key.generate().save(key)
    return src, key


def _no_traceback_text(output: str) -> None:
    for noise in ("Traceback", "internal error", "OSError", "With tag", 'File "'):
        assert noise not in output


def _left_over(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(MANIFEST_NAME)]  # not an output


@pytest.mark.parametrize("operation", ["encrypt", "decrypt"])
def test_a_full_output_disk_is_reported_per_file(tree, tmp_path, capsys, operation):
    src, key = tree
    if operation == "decrypt":
        encrypted = tmp_path / "encrypted"
        assert main(["encrypt", "--key", str(key), "--mode", "standard", "--jobs", "1", "-q",
                     str(src), str(encrypted)]) == 0
        src = encrypted
    capsys.readouterr()
    with full_disk(tmp_path / "out") as out:
        args = ["--mode", "standard"] if operation == "encrypt" else []
        code = main([operation, "--key", str(key), *args, "--jobs", "1", "-v", str(src), str(out)])
        output = capsys.readouterr().out
        assert _left_over(out) == []  # nothing half-written
    assert code == 1
    for name in NAMES:
        assert f"{name}: cannot write {out / name}: no space left on device" in output
    _no_traceback_text(output)


def test_a_read_only_output_disk_is_reported_per_file(tree, tmp_path, capsys):
    src, key = tree
    with read_only_disk(tmp_path / "out") as out:
        code = main(["encrypt", "--key", str(key), "--mode", "standard", "--jobs", "1", str(src), str(out)])
        output = capsys.readouterr().out
    assert code == 1
    reason = "read-only file system" if os.geteuid() == 0 else "permission denied"  # tmpfs ro, or chmod
    for name in NAMES:
        assert f"{name}: cannot write {out / name}: {reason}" in output
    _no_traceback_text(output)
