"""One worker process's set-up, written once, and the :class:`Worker` that runs one task.

Every process pool of the package (the batch runner's, ``send``'s sealers) starts its processes
with :func:`spawn_pool`, so each is prepared the same way by :func:`prepare_process`:

- one compute thread per process (the pool is the parallelism), set before torch is imported,
  which happens later, on the first image (the pipeline loads and caches the model per process);
- SIGINT ignored: the parent handles Ctrl-C and lets the files in flight finish, so every
  output on disk is complete;
- warnings silenced: the parent has already shown key-file warnings once;
- spawned, never forked: torch and threads do not survive a fork.

A :class:`Worker` turns a :class:`~dicomcrypt.runner.tasks.Task` into a
:class:`~dicomcrypt.runner.tasks.FileResult` and never raises for a file's problem. Its output
is written atomically and never over an existing file unless the task says ``overwrite``:
a file is complete or absent, so a task can be run again (a retry, a rerun, a cluster
re-running a task whose worker died).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from dicomcrypt.errors import DicomCryptError, OutputExistsError, OutputWriteError
from dicomcrypt.runner.jobs import Job
from dicomcrypt.runner.tasks import FileResult, Status, Task

__all__ = ["DICOMDIR_NOTE", "OUTPUT_EXISTS_NOTE", "Worker", "prepare_process", "spawn_pool", "usable_cpus"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
DICOMDIR_NOTE = "DICOMDIR not copied: its records would be stale and its icons unencrypted; rebuild it over OUT"
OUTPUT_EXISTS_NOTE = "output exists (--force overwrites)"


def usable_cpus() -> int:
    """CPUs this process may use (respects affinity and container CPU sets where visible): the
    default size of every pool of worker processes (batch jobs, send's sealers, serve's restorers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def prepare_process(*, ignore_sigint: bool = True) -> None:
    """Make this process a pool worker: one thread, Ctrl-C left to the parent, warnings off.

    A Dask worker passes ``ignore_sigint=False``: its Ctrl-C belongs to whoever started it (and
    Python sets signal handlers only from the main thread, where a Dask plugin does not run)."""
    for var in THREAD_VARIABLES:
        os.environ[var] = "1"
    if "torch" in sys.modules:  # should not happen, but then the variables came too late
        sys.modules["torch"].set_num_threads(1)
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")


def spawn_pool(workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each prepared, then set up by ``initializer(*initargs)``."""
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_process,
        initargs=(initializer, initargs),
    )


def _start_process(initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    prepare_process()
    initializer(*initargs)


class Worker:
    """Runs tasks of one job; one per worker process (or one in-process)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def run(self, task: Task) -> FileResult:
        """The task done, skipped or failed; never raises for a file's problem."""
        started = time.perf_counter()
        src, dst = Path(task.src), Path(task.dst)
        if src.name.upper() == "DICOMDIR":
            return FileResult(task.rel, "skipped", note=DICOMDIR_NOTE)
        if not task.overwrite and os.path.lexists(dst):
            return FileResult(task.rel, "skipped", note=OUTPUT_EXISTS_NOTE)
        try:
            return self._process(task, started)
        except OutputExistsError:  # created meanwhile, by another run
            return FileResult(task.rel, "skipped", note=OUTPUT_EXISTS_NOTE)
        except DicomCryptError as exc:
            message = _strip_path(str(exc) or type(exc).__name__, src)
            return FileResult(task.rel, "failed", error=message, seconds=time.perf_counter() - started)
        except Exception as exc:  # a bug or an unforeseen input: report it, keep going
            message = f"internal error: {type(exc).__name__}: {exc}"
            return FileResult(task.rel, "failed", error=message, seconds=time.perf_counter() - started)

    def _process(self, task: Task, started: float) -> FileResult:
        from dicomcrypt.files import copy_file_atomic, read_dicom, write_dicom_atomic

        src, dst = Path(task.src), Path(task.dst)
        ds = read_dicom(src)
        outcome = self.job.apply(ds)
        del ds
        try:
            if outcome.action == "passed through":
                copy_file_atomic(src, dst, force=task.overwrite)  # byte for byte: truly unchanged
                status: Status = "passed"
            else:
                write_dicom_atomic(outcome.dataset, dst, force=task.overwrite)
                status = "done"
        except OSError as exc:  # a full or read-only disk: say so, not pydicom's traceback text
            raise OutputWriteError.for_path(dst, exc) from exc
        mode = getattr(outcome.mode, "name", outcome.mode)
        return FileResult(
            task.rel,
            status,
            action=outcome.action,
            mode=str(mode).lower() if mode else None,
            note=outcome.note or "",
            bytes_in=_size(src),
            bytes_out=_size(dst),
            seconds=time.perf_counter() - started,
        )


_WORKER: Worker | None = None


def start_worker(job: Job) -> None:
    """Pool initializer: this process's :class:`Worker` (the job arrives once per process)."""
    global _WORKER
    _WORKER = Worker(job)


def run_in_worker(task: Task) -> FileResult:
    """What a pool process runs per task."""
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(task)


def worker_started() -> bool:
    """Whether this process's worker is set up (a pool submits it to see if workers can start)."""
    return _WORKER is not None


def _strip_path(message: str, src: Path) -> str:
    """Messages that start with the file's own path would repeat it in the report."""
    return message.removeprefix(f"{src}: ")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
