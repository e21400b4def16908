"""What a batch is made of: a :class:`Task` per input file, planned from IN -> OUT, and the
small :class:`FileResult` each one comes back as.

Planning refuses what cannot work before any file is touched (IN missing, OUT inside IN, a file
IN onto itself), and :func:`guard_inputs` refuses single tasks whose output would land on an
input (IN inside OUT, links). A result is small and picklable, never a dataset: pixel data must
not travel back from a worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dicomcrypt.errors import InvalidInputError

__all__ = ["FileResult", "Status", "Task", "guard_inputs", "plan"]

Status = Literal["done", "passed", "skipped", "failed"]


@dataclass(frozen=True)
class Task:
    """One input file and where its output goes.

    ``overwrite`` replaces an existing output: the caller's choice (``--force``), or a retry
    redoing an output that this very run wrote before its worker died.
    """

    src: str
    rel: str
    dst: str
    overwrite: bool = False


@dataclass(frozen=True)
class FileResult:
    """What happened to one file: small and picklable, never the dataset."""

    rel: str
    status: Status
    action: str = ""
    mode: str | None = None
    note: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    error: str | None = None


def plan(src_root: Path, dst: str | os.PathLike[str], *, overwrite: bool = False) -> list[Task]:
    """The tasks for IN -> OUT. Raises InvalidInputError when IN/OUT cannot work.

    A file IN with a folder OUT (existing, or spelled with a trailing slash, which is why
    OUT arrives as a string) writes OUT/<name of IN>, like ``cp``.
    """
    from dicomcrypt.files import iter_dicom_inputs

    dst_text = os.fspath(dst)
    dst_root = Path(dst_text)
    if not src_root.exists():
        raise InvalidInputError(f"input {src_root}: no such file or folder")
    src_abs = src_root.resolve()
    if src_root.is_file():
        if dst_root.is_dir() or dst_text.endswith(("/", os.sep)):
            dst_root = dst_root / src_root.name
        if dst_root.resolve() == src_abs:
            raise InvalidInputError(f"output {dst_root} is the input file; inputs are never modified")
        return [Task(str(src_root), src_root.name, str(dst_root), overwrite)]
    if not src_root.is_dir():
        raise InvalidInputError(f"input {src_root}: not a regular file or folder")
    dst_abs = dst_root.resolve()
    if dst_abs == src_abs or dst_abs.is_relative_to(src_abs):
        raise InvalidInputError(
            f"output {dst_root} is inside input {src_root}; choose an OUT outside IN "
            "(the next run would take the outputs for inputs)"
        )
    if dst_root.exists() and not dst_root.is_dir():
        raise InvalidInputError(f"output {dst_root} exists and is not a folder (IN is a folder)")
    return [
        Task(str(path), rel.as_posix(), str(dst_root / rel), overwrite)
        for path, rel in iter_dicom_inputs(src_root)
    ]


def guard_inputs(tasks: list[Task]) -> tuple[list[Task], list[FileResult]]:
    """Refuse any task whose output would land on an input file (IN inside OUT, links)."""
    inputs = {os.path.realpath(t.src) for t in tasks}
    ok, refused = [], []
    for task in tasks:
        if os.path.realpath(task.dst) in inputs:
            refused.append(FileResult(task.rel, "failed", error=f"output {task.dst} is an input file; not written"))
        else:
            ok.append(task)
    return ok, refused
