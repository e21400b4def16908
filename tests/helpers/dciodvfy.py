"""Run dicom3tools' ``dciodvfy`` and compare its errors between two objects.

``dciodvfy`` writes its report to stderr: one message per line ("Error - ...", "Warning - ...",
sometimes prefixed by a tag such as "(0x0019,0x1060)  ?  - Error - ..."), with multi-line
values continuing on the following lines. :func:`dciodvfy_errors` keeps only the first line of
each error message, whitespace-normalised and with decimal numbers replaced by ``#`` (so
"value length - expected 30000 dec - got 20000 dec" is the same error for an image of another
size), so two reports can be compared as sets. Hex tags such as ``0x0028`` are kept.

Usage::

    from helpers.dciodvfy import dciodvfy_errors, new_errors, require_tool

    require_tool("dciodvfy")              # skip (or fail under CI) if missing
    added = new_errors(original_ds, encrypted_ds)
    assert not added, added
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

__all__ = ["dciodvfy_errors", "new_errors", "normalise", "require_tool", "run_dciodvfy"]

_MESSAGE = re.compile(r"^(?:\(0x[0-9a-fA-F]{4},0x[0-9a-fA-F]{4}\).*?- )?(Error|Warning) - ")
_NUMBER = re.compile(r"(?<![0-9A-Za-z.])[-+]?\d+(?:\.\d+)?(?![0-9A-Za-z])")


def require_tool(name: str) -> str:
    """Path of program ``name``; ``pytest.skip`` if missing, but fail when CI is set."""
    import pytest

    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required under CI but is not installed")
    pytest.skip(f"{name} is not installed")
    raise AssertionError("unreachable")


def run_dciodvfy(source: str | os.PathLike[str] | Dataset) -> str:
    """The full dciodvfy report (stderr + stdout) for a file or a dataset."""
    exe = require_tool("dciodvfy")
    if isinstance(source, Dataset):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "object.dcm"
            pydicom.dcmwrite(path, source, enforce_file_format=True)
            return _run(exe, path)
    return _run(exe, Path(source))


def _run(exe: str, path: Path) -> str:
    done = subprocess.run(
        [exe, str(path)], capture_output=True, text=True, errors="replace", timeout=120
    )
    return done.stderr + done.stdout


def normalise(line: str, *, numbers: bool = True) -> str:
    """One message line as compared: whitespace collapsed, decimal numbers as ``#``."""
    text = " ".join(line.split())
    return _NUMBER.sub("#", text) if numbers else text


def dciodvfy_errors(
    source: str | os.PathLike[str] | Dataset,
    *,
    ignore: Iterable[str] = (),
    numbers: bool = True,
) -> frozenset[str]:
    """The set of normalised error lines; lines containing any ``ignore`` text are dropped."""
    ignored = tuple(ignore)
    errors = set()
    for line in run_dciodvfy(source).splitlines():
        match = _MESSAGE.match(line.strip())
        if not match or match.group(1) != "Error":
            continue
        text = normalise(line, numbers=numbers)
        if any(part in text for part in ignored):
            continue
        errors.add(text)
    return frozenset(errors)


def new_errors(
    original: str | os.PathLike[str] | Dataset,
    candidate: str | os.PathLike[str] | Dataset,
    *,
    ignore: Iterable[str] = (),
) -> frozenset[str]:
    """Errors dciodvfy reports for ``candidate`` that it did not report for ``original``."""
    ignored = tuple(ignore)
    return dciodvfy_errors(candidate, ignore=ignored) - dciodvfy_errors(original, ignore=ignored)
