"""Running a batch's tasks: ``backend.run(job, tasks)`` yields a :class:`FileResult` per task,
in the order they finish. :class:`LocalPool` runs them on this machine; a cluster backend (Dask)
implements the same :class:`Backend` interface, so the CLI and its report do not change.

What the local pool guarantees:

- a worker that dies (a native decoder crash, the OOM killer) costs the file it was working on,
  not the batch: the files in flight are retried one at a time, each in a fresh one-process
  pool, and only the one that really kills its worker is reported failed
  (:data:`CRASH_ERROR`); the batch then goes on in a new pool;
- workers that cannot start at all end the batch, every file left reported as
  :data:`NOT_STARTED_ERROR`, instead of looping;
- Ctrl-C: queued files are cancelled, running ones finish (workers ignore SIGINT, see
  :mod:`dicomcrypt.runner.worker`) and are yielded, then KeyboardInterrupt propagates; every
  output on disk is complete.

Only about one task per worker is queued, so a crash takes few innocent files with it and
Ctrl-C has little to cancel.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from dicomcrypt.runner.jobs import Job
from dicomcrypt.runner.tasks import FileResult, Task
from dicomcrypt.runner.worker import Worker, run_in_worker, spawn_pool, start_worker, worker_started

__all__ = ["CRASH_ERROR", "NOT_STARTED_ERROR", "Backend", "LocalPool", "Results"]

CRASH_ERROR = "internal error: the worker process died on this file (crash or out of memory)"
NOT_STARTED_ERROR = "not started: worker processes cannot start"
Results = Generator[FileResult, None, None]
_QUEUED_EXTRA = 1
"""Tasks queued beyond one per worker: keeps workers busy; a crash or Ctrl-C touches few."""


class Backend(Protocol):
    """Runs a job's tasks somewhere and yields each task's result as it finishes.

    Closing the generator early (the caller was interrupted) cancels what has not started.
    """

    def run(self, job: Job, tasks: Sequence[Task]) -> Results: ...


@dataclasses.dataclass(frozen=True)
class LocalPool:
    """Up to ``workers`` processes on this machine; one worker (or one task) runs in this process,
    where the pipeline may use every core."""

    workers: int

    def run(self, job: Job, tasks: Sequence[Task]) -> Results:
        workers = max(1, min(self.workers, len(tasks)))
        if workers == 1:
            worker = Worker(job)
            for task in tasks:
                yield worker.run(task)
        else:
            yield from _run_in_pool(job, tasks, workers)


def _run_in_pool(job: Job, tasks: Sequence[Task], workers: int) -> Results:
    """Feed pools of ``workers`` until every task has a result (see the module docstring)."""
    remaining = deque(tasks)
    existed = {t.dst for t in tasks if os.path.lexists(t.dst)}  # before this run wrote anything

    while remaining:
        suspects: list[Task] = []
        with spawn_pool(workers, start_worker, (job,)) as pool:
            yield from _drain(pool, remaining, workers, suspects)
        for i, task in enumerate(suspects):
            # A file may have been finished, its result lost with the pool: redo it, over our
            # own output, so the report says what really happened to it.
            if task.dst not in existed and os.path.lexists(task.dst):
                task = dataclasses.replace(task, overwrite=True)
            with spawn_pool(1, start_worker, (job,)) as pool:
                try:
                    pool.submit(worker_started).result()  # can a worker start at all?
                except BrokenProcessPool:
                    for lost in [*suspects[i:], *remaining]:
                        yield FileResult(lost.rel, "failed", error=NOT_STARTED_ERROR)
                    return
                try:
                    result = pool.submit(run_in_worker, task).result()
                except BrokenProcessPool:
                    result = FileResult(task.rel, "failed", error=CRASH_ERROR)
            yield result


def _fill(
    pool: ProcessPoolExecutor, remaining: deque[Task], pending: dict[Future[FileResult], Task], limit: int
) -> None:
    """Submit queued tasks until ``limit`` are in flight; a broken pool leaves the task queued."""
    while remaining and len(pending) < limit:
        task = remaining.popleft()
        try:
            pending[pool.submit(run_in_worker, task)] = task
        except BrokenProcessPool:
            remaining.appendleft(task)
            return


def _drain(
    pool: ProcessPoolExecutor, remaining: deque[Task], workers: int, suspects: list[Task]
) -> Results:
    """Feed ``pool`` from ``remaining`` until done or broken; the tasks in flight when it broke
    are appended to ``suspects``."""
    pending: dict[Future[FileResult], Task] = {}
    try:
        while remaining or pending:
            if not suspects:
                _fill(pool, remaining, pending, workers + _QUEUED_EXTRA)
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    suspects.append(task)
                    continue
                except Exception as exc:  # e.g. a result that failed to pickle
                    result = FileResult(task.rel, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
                yield result
            if suspects and not pending:
                break
    except BaseException as exc:
        # Ctrl-C here, or the caller stopped reading (GeneratorExit): queued files are
        # cancelled, running ones finish, so every output on disk is complete.
        pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(exc, KeyboardInterrupt):
            for future, task in pending.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    yield future.result()
        raise
