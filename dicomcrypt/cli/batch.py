"""The batch runner behind ``encrypt`` and ``decrypt``: walk IN, run the pipeline on every
file (in worker processes), write OUT atomically, report.

Rules it keeps, whatever happens to a single file:

- a file's failure never stops the batch, and never leaves a partial output behind
  (:mod:`dicomcrypt.files` writes a temporary file and renames it);
- inputs are only read; an output is never written over an input;
- an existing output is left alone without ``--force`` and counted as skipped, so re-running
  a batch after a failure or Ctrl-C redoes only what is missing;
- workers return a small :class:`FileResult`, never a dataset (pixel data must not be
  pickled back to the parent).

The pipeline is imported inside the worker, so the parent stays light.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from dicomcrypt.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    error,
    human_bytes,
    plural,
)
from dicomcrypt.errors import DicomCryptError, InvalidInputError, OutputExistsError

Operation = Literal["encrypt", "decrypt", "rekey"]
Status = Literal["done", "passed", "skipped", "failed"]

PROGRESS_MIN_FILES = 4
"""Below this many files an automatic progress bar is more noise than help."""
_QUEUED_EXTRA = 1
"""Tasks queued beyond one per worker: keeps workers busy; a crash or Ctrl-C touches few."""
_DICOMDIR_NOTE = "DICOMDIR not copied: its records would be stale and its icons unencrypted; rebuild it over OUT"


@dataclass(frozen=True)
class Job:
    """What to do to every file; sent once to each worker (picklable, holds no key material)."""

    operation: Operation
    key_paths: tuple[str, ...]
    mode: str = "lossless"
    model: str | None = None
    latent_format: str = "u8"
    force: bool = False
    recipients: tuple[str, ...] = ()  # encrypt: public recipient strings
    to: tuple[str, ...] = ()  # rekey: key files and recipient strings to re-wrap for
    keep: bool = False  # rekey: keep the existing stanzas
    identity_certs: tuple[str, ...] = ()  # encrypt --protect-identity: RSA certificate files
    identity_keys: tuple[str, ...] = ()  # decrypt: RSA private key files for Encrypted Attributes
    uid_secret: bytes = b""  # encrypt --protect-identity: one per run, so a study's UIDs stay consistent


@dataclass(frozen=True)
class Task:
    """One input file and where its output goes.

    ``replace_own`` lets a retry overwrite an output that this very run wrote before its
    worker pool broke (never one that existed before the run).
    """

    src: str
    rel: str
    dst: str
    replace_own: bool = False


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


def load_keys(job: Job) -> Any:
    """What ``job`` needs, loaded and checked. Raises KeyFileError, RecipientFormatError, ...

    encrypt: ``(key or keyring or None, recipients)``; decrypt: a key ring; rekey: ``(key ring, targets)``.
    """
    from dicomcrypt.cli._targets import load_encryption_targets
    from dicomcrypt.crypto import KeyRing, parse_target

    if job.operation == "encrypt":
        return load_encryption_targets(job.key_paths[0] if job.key_paths else None, job.recipients)
    ring = KeyRing.load(job.key_paths)
    if job.operation == "rekey":
        targets = [parse_target(t)[0] for t in job.to] or list(ring.encrypt_to)
        if not targets:
            raise InvalidInputError("rekey needs --to (key files or recipient strings), or a keyring .toml with an 'encrypt' list")
        return ring, targets
    return ring


def load_identity(job: Job) -> Any:
    """encrypt: the IdentityProtection (or None); decrypt: the identity keys. Raises KeyFileError."""
    if job.operation == "encrypt" and job.identity_certs:
        from dicomcrypt.identity_protection import IdentityProtection

        return IdentityProtection.load(job.identity_certs, uid_secret=job.uid_secret or None)
    if job.operation == "decrypt" and job.identity_keys:
        from dicomcrypt.identity_protection import IdentityKey

        return [IdentityKey.load(path) for path in job.identity_keys]
    return None


class Worker:
    """Runs tasks with the keys loaded once; one per worker process (or one in-process)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.keys = load_keys(job)
        self.identity = load_identity(job)

    def run(self, task: Task) -> FileResult:
        started = time.perf_counter()
        src, dst = Path(task.src), Path(task.dst)
        force = self.job.force or task.replace_own
        if src.name.upper() == "DICOMDIR":
            return FileResult(task.rel, "skipped", note=_DICOMDIR_NOTE)
        if not force and os.path.lexists(dst):
            return FileResult(task.rel, "skipped", note="output exists (--force overwrites)")
        try:
            return self._run(task, src, dst, force, started)
        except OutputExistsError:  # created meanwhile, by another run
            return FileResult(task.rel, "skipped", note="output exists (--force overwrites)")
        except DicomCryptError as exc:
            message = _strip_path(str(exc) or type(exc).__name__, src)
            return FileResult(task.rel, "failed", error=message, seconds=time.perf_counter() - started)
        except Exception as exc:  # a bug or an unforeseen input: report it, keep going
            message = f"internal error: {type(exc).__name__}: {exc}"
            return FileResult(task.rel, "failed", error=message, seconds=time.perf_counter() - started)

    def _run(self, task: Task, src: Path, dst: Path, force: bool, started: float) -> FileResult:
        from dicomcrypt import pipeline
        from dicomcrypt.files import copy_file_atomic, read_dicom, write_dicom_atomic

        ds = read_dicom(src)
        if self.job.operation == "encrypt":
            key, recipients = self.keys
            outcome = pipeline.encrypt_instance(
                ds,
                key=key,
                recipients=recipients,
                mode=self.job.mode,
                model=self.job.model,
                latent_format=self.job.latent_format,
                protect_identity=self.identity,
            )
        elif self.job.operation == "rekey":
            ring, targets = self.keys
            outcome = pipeline.rekey_instance(ds, keys=ring, to=targets, keep=self.job.keep)
        else:
            outcome = pipeline.decrypt_instance(ds, keys=self.keys, identity_keys=self.identity or ())
        del ds
        if outcome.action == "passed through":
            copy_file_atomic(src, dst, force=force)  # byte for byte: truly unchanged
            status: Status = "passed"
        else:
            write_dicom_atomic(outcome.dataset, dst, force=force)
            status = "done"
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


def _init_worker(job: Job) -> None:
    """Pool initializer: one thread per process (the pool is the parallelism), keys once.

    The thread variables must be set before torch is imported, which happens later, on the
    first image (the pipeline loads and caches the model per process).
    """
    global _WORKER
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    if "torch" in sys.modules:  # should not happen, but then the variables came too late
        sys.modules["torch"].set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and lets us finish
    warnings.simplefilter("ignore")  # the parent has already shown key-file warnings once
    _WORKER = Worker(job)


def _run_in_worker(task: Task) -> FileResult:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(task)


def _strip_path(message: str, src: Path) -> str:
    """Messages that start with the file's own path would repeat it in the report."""
    prefix = f"{src}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --------------------------------------------------------------------------- planning


def plan(src_root: Path, dst: str | os.PathLike[str]) -> list[Task]:
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
        return [Task(str(src_root), src_root.name, str(dst_root))]
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
    return [Task(str(path), rel.as_posix(), str(dst_root / rel)) for path, rel in iter_dicom_inputs(src_root)]


def _guard_inputs(tasks: list[Task]) -> tuple[list[Task], list[FileResult]]:
    """Refuse any task whose output would land on an input file (IN inside OUT, links)."""
    inputs = {os.path.realpath(t.src) for t in tasks}
    ok, refused = [], []
    for task in tasks:
        if os.path.realpath(task.dst) in inputs:
            refused.append(FileResult(task.rel, "failed", error=f"output {task.dst} is an input file; not written"))
        else:
            ok.append(task)
    return ok, refused


# --------------------------------------------------------------------------- running


@dataclass
class Report:
    """Collects results, prints per-file lines (-v) and the summary."""

    operation: Operation
    verbosity: int
    out: TextIO
    results: list[FileResult] = field(default_factory=list)
    bar: Any = None

    def add(self, result: FileResult) -> None:
        self.results.append(result)
        if self.bar is not None:
            self.bar.update(1)
        if self.verbosity >= 1:
            self._write(self._line(result))

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out)

    def _line(self, r: FileResult) -> str:
        if r.status == "failed":
            return f"FAILED          {r.rel}: {r.error}"
        if r.status == "skipped":
            return f"skipped         {r.rel} ({r.note})"
        detail = f"{human_bytes(r.bytes_in)} -> {human_bytes(r.bytes_out)}, {r.seconds:.2f} s"
        if r.status == "passed":
            return f"passed through  {r.rel} ({r.note or 'unchanged'}; {detail})"
        extra = [detail]
        if self.operation == "decrypt":
            extra.append(_restored_note(r.mode))
        if r.note:
            extra.append(r.note)
        return f"{r.action:<15} {r.rel} [{r.mode}] ({'; '.join(extra)})"

    def summary(self, wall: float, interrupted: bool = False) -> str:
        count = Counter(r.status for r in self.results)
        verb = {"encrypt": "encrypted", "decrypt": "decrypted", "rekey": "rekeyed"}[self.operation]
        lines = [
            f"{self.operation}: {plural(len(self.results), 'file')} in {wall:.1f} s: "
            f"{count['done']} {verb}, {count['passed']} passed through, "
            f"{count['skipped']} skipped, {count['failed']} failed"
            + (" (interrupted: the rest was not started)" if interrupted else "")
        ]
        processed = [r for r in self.results if r.status in ("done", "passed")]
        if processed:
            b_in = sum(r.bytes_in for r in processed)
            b_out = sum(r.bytes_out for r in processed)
            lines.append(f"  bytes: {human_bytes(b_in)} in, {human_bytes(b_out)} out")
        modes = Counter(r.mode for r in self.results if r.status == "done" and r.mode)
        if modes:
            by_mode = ", ".join(f"{m} {n}" for m, n in sorted(modes.items()))
            suffix = ""
            if self.operation == "decrypt" and set(modes) & {"lossless", "standard"}:
                suffix = " (lossless and standard: pixels verified identical by digest)"
            lines.append(f"  modes: {by_mode}{suffix}")
        notes = Counter(r.note for r in self.results if r.status in ("done", "passed", "skipped") and r.note)
        for note, n in sorted(notes.items()):
            lines.append(f"  {plural(n, 'file')}: {note}")
        failed = sorted((r for r in self.results if r.status == "failed"), key=lambda r: r.rel)
        if failed:
            lines.append(f"failed ({len(failed)}):")
            lines.extend(f"  {r.rel}: {r.error}" for r in failed)
        return "\n".join(lines)


def _restored_note(mode: str | None) -> str:
    if mode in ("lossless", "standard"):
        return "identical pixels, digest verified"
    if mode == "lossy":
        return "lossy reconstruction, new SOP Instance UID"
    return f"mode {mode}"


def run_batch(
    job: Job,
    src_root: Path,
    dst_root: str | os.PathLike[str],
    *,
    jobs: int,
    progress: bool | None,
    verbosity: int,
    out: TextIO | None = None,
) -> int:
    """Run ``job`` over IN -> OUT; returns the exit code. Prints the report on ``out``
    (stdout), the progress bar on stderr."""
    out = out or sys.stdout
    started = time.perf_counter()
    try:
        load_keys(job)  # fail fast, in the parent, with one clear message
        load_identity(job)
    except (DicomCryptError, OSError) as exc:
        return error(str(exc))
    try:
        tasks = plan(src_root, dst_root)
    except (DicomCryptError, OSError) as exc:
        return error(str(exc))
    tasks, refused = _guard_inputs(tasks)

    report = Report(job.operation, verbosity, out)
    if not tasks and not refused:
        if verbosity >= 0:
            print(f"{job.operation}: nothing to do: no input files under {src_root}", file=out)
        return EXIT_OK
    for result in refused:
        report.add(result)

    show_bar = progress if progress is not None else (sys.stderr.isatty() and len(tasks) >= PROGRESS_MIN_FILES)
    if show_bar:
        from tqdm import tqdm

        report.bar = tqdm(total=len(tasks) + len(refused), initial=len(refused), unit="file", file=sys.stderr,
                          desc=job.operation, dynamic_ncols=True)
    interrupted = False
    try:
        workers = max(1, min(jobs, len(tasks)))
        if workers == 1:
            _run_in_process(job, tasks, report)
        else:
            _run_in_pool(job, tasks, report, workers)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if report.bar is not None:
            report.bar.close()

    if verbosity >= 0 or any(r.status == "failed" for r in report.results):
        print(report.summary(time.perf_counter() - started, interrupted), file=out)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if any(r.status == "failed" for r in report.results) else EXIT_OK


def _run_in_process(job: Job, tasks: Iterable[Task], report: Report) -> None:
    """``--jobs 1`` (or a single file): no processes, the pipeline may use every core."""
    worker = Worker(job)
    for task in tasks:
        report.add(worker.run(task))


def _run_in_pool(job: Job, tasks: Sequence[Task], report: Report, workers: int) -> None:
    """Run tasks in a process pool of ``workers``.

    A worker that dies (a native decoder crash, the OOM killer) breaks the whole pool and
    every file in flight with it. Those files are then retried one at a time, each in a fresh
    one-worker pool, so only the file that really kills its worker is reported as failed;
    the batch then goes on in a new pool.
    """
    remaining = deque(tasks)
    existed = {t.dst for t in tasks if os.path.lexists(t.dst)}  # before this run wrote anything
    context = multiprocessing.get_context("spawn")  # no fork: torch and threads do not survive it

    def new_pool(n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(n, mp_context=context, initializer=_init_worker, initargs=(job,))

    while remaining:
        with new_pool(workers) as pool:
            suspects = _drain(pool, remaining, report, workers)
        if not suspects:
            continue
        for i, task in enumerate(suspects):
            # A file may have been finished, its result lost with the pool: redo it, over our
            # own output, so the report says what really happened to it.
            if task.dst not in existed and os.path.lexists(task.dst):
                task = dataclasses.replace(task, replace_own=True)
            with new_pool(1) as pool:
                try:
                    pool.submit(_ping).result()  # can a worker start at all?
                except BrokenProcessPool:
                    for lost in [*suspects[i:], *remaining]:
                        report.add(FileResult(lost.rel, "failed", error="not started: worker processes cannot start"))
                    remaining.clear()
                    return
                try:
                    result = pool.submit(_run_in_worker, task).result()
                except BrokenProcessPool:
                    result = FileResult(task.rel, "failed", error=_CRASH)
            report.add(result)


def _ping() -> bool:
    return _WORKER is not None


_CRASH = "internal error: the worker process died on this file (crash or out of memory)"


def _drain(pool: ProcessPoolExecutor, remaining: deque[Task], report: Report, workers: int) -> list[Task]:
    """Feed ``pool`` from ``remaining`` until done or broken.

    Returns the tasks that were in flight when the pool broke (empty if it did not). Only
    about one task per worker is queued, so a crash takes few innocent files with it and
    Ctrl-C has little to cancel.
    """
    pending: dict[Future[FileResult], Task] = {}
    suspects: list[Task] = []
    try:
        while remaining or pending:
            while remaining and not suspects and len(pending) < workers + _QUEUED_EXTRA:
                task = remaining.popleft()
                try:
                    pending[pool.submit(_run_in_worker, task)] = task
                except BrokenProcessPool:
                    remaining.appendleft(task)
                    break
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                try:
                    report.add(future.result())
                except BrokenProcessPool:
                    suspects.append(task)
                except Exception as exc:  # e.g. a result that failed to pickle
                    report.add(FileResult(task.rel, "failed", error=f"internal error: {type(exc).__name__}: {exc}"))
            if suspects and not pending:
                break
    except KeyboardInterrupt:
        # Queued files are cancelled; running ones finish (workers ignore SIGINT), so every
        # output on disk is complete.
        pool.shutdown(wait=True, cancel_futures=True)
        for future, task in pending.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                report.add(future.result())
        raise
    return suspects
