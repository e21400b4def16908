"""Real full and read-only disks for tests, not monkeypatched writes.

A small tmpfs is mounted at a test's folder when the tests run as root (as in CI's container
and here); unmounted in teardown. Without root a read-only folder falls back to ``chmod`` (which
root would ignore), and a full disk cannot be made: that test skips.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def full_disk(path: Path, size: str = "4k") -> Iterator[Path]:
    """``path`` on a file system of ``size`` bytes: writes past it fail with ENOSPC."""
    if not _mount_tmpfs(path, f"size={size},mode=0755"):
        pytest.skip("a full disk needs root (mount -t tmpfs)")
    try:
        yield path
    finally:
        _unmount(path)


@contextmanager
def read_only_disk(path: Path) -> Iterator[Path]:
    """``path`` on a read-only file system (EROFS), or a read-only folder (EACCES) without root."""
    if _mount_tmpfs(path, "ro,size=64k"):
        try:
            yield path
        finally:
            _unmount(path)
        return
    if os.geteuid() == 0:
        pytest.skip("mount -t tmpfs is not permitted here, and root ignores chmod")
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)
