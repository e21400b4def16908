"""The report of ``encrypt``, ``decrypt`` and ``rekey``: plan IN -> OUT, run the job with
:mod:`dicomcrypt.runner`, draw the progress bar, print a line per file and the summary, and
choose the exit code.

The runner keeps the rules (a file's failure never stops the batch, outputs are atomic and never
written over an input or an existing file without ``--force``, a crashed worker costs only its
file, Ctrl-C lets the files in flight finish); this module only says what happened.

For a folder IN it also keeps the job manifest in OUT (:mod:`dicomcrypt.runner.manifest`): it is
opened before the run (another job's manifest refuses the run), filters out the files already
done, and records each result as it arrives, here on the client: backends never touch it.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dicomcrypt.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    error,
    human_bytes,
    plural,
)
from dicomcrypt.errors import DicomCryptError, JobMismatchError, ManifestError
from dicomcrypt.logsafe import escape
from dicomcrypt.runner import (
    Backend,
    FileResult,
    Job,
    LocalPool,
    Manifest,
    Operation,
    Task,
    guard_inputs,
    job_identity,
    plan,
)
from dicomcrypt.runner.manifest import manifest_path
from dicomcrypt.runner.pool import Results

PROGRESS_MIN_FILES = 4
"""Below this many files an automatic progress bar is more noise than help."""


@dataclass
class Report:
    """Collects results, records each in the job manifest (if any), prints per-file lines (-v)
    and the summary."""

    operation: Operation
    verbosity: int
    out: TextIO
    results: list[FileResult] = field(default_factory=list)
    bar: Any = None
    manifest: Manifest | None = None

    def add(self, result: FileResult, *, record: bool = True) -> None:
        """Count and show a result; ``record`` it in the job manifest, if there is one."""
        self.results.append(result)
        if record and self.manifest is not None:
            try:
                self.manifest.record(result)
            except ManifestError as exc:
                self.drop_manifest(exc)
        if self.bar is not None:
            self.bar.update(1)
        if self.verbosity >= 1:
            self._write(self._line(result))

    def drop_manifest(self, exc: ManifestError) -> None:
        """A manifest that cannot be written: warn and go on without it (outputs stay complete,
        and a re-run still skips existing outputs)."""
        print(f"dicomcrypt: warning: {exc}; going on without it", file=sys.stderr)
        manifest, self.manifest = self.manifest, None
        if manifest is not None:
            try:
                manifest.close()
            except ManifestError:
                pass

    def discard_manifest(self, *, delete: bool) -> None:
        """Forget the manifest; ``delete`` it too when this run created it."""
        manifest, self.manifest = self.manifest, None
        if manifest is not None:
            manifest.discard() if delete else manifest.close()

    def close_manifest(self) -> None:
        manifest, self.manifest = self.manifest, None
        if manifest is not None:
            try:
                manifest.close()
            except ManifestError as exc:
                print(f"dicomcrypt: warning: {exc}", file=sys.stderr)

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out)

    def _line(self, r: FileResult) -> str:
        """One line per file; names and messages may come from a hostile file: escaped."""
        rel = escape(r.rel)
        if r.status == "failed":
            return f"FAILED          {rel}: {escape(r.error)}"
        if r.status == "skipped":
            return f"skipped         {rel} ({r.note})"
        detail = f"{human_bytes(r.bytes_in)} -> {human_bytes(r.bytes_out)}, {r.seconds:.2f} s"
        if r.status == "passed":
            return f"passed through  {rel} ({escape(r.note or 'unchanged')}; {detail})"
        extra = [detail]
        if self.operation == "decrypt":
            extra.append(_restored_note(r.mode))
        if r.note:
            extra.append(escape(r.note))
        return f"{r.action:<15} {rel} [{r.mode}] ({'; '.join(extra)})"

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
            lines.append(f"  {plural(n, 'file')}: {escape(note)}")
        failed = sorted((r for r in self.results if r.status == "failed"), key=lambda r: r.rel)
        if failed:
            lines.append(f"failed ({len(failed)}):")
            lines.extend(f"  {escape(r.rel)}: {escape(r.error)}" for r in failed)
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
    force: bool,
    progress: bool | None,
    verbosity: int,
    out: TextIO | None = None,
    backend: Backend | None = None,
) -> int:
    """Run ``job`` over IN -> OUT on ``backend`` (default: a local pool of ``jobs`` processes);
    returns the exit code. Prints the report on ``out`` (stdout), the progress bar on stderr."""
    out = out or sys.stdout
    started = time.perf_counter()
    try:
        tasks = plan(src_root, dst_root, overwrite=force)
    except (DicomCryptError, OSError) as exc:
        return error(str(exc))
    tasks, refused = guard_inputs(tasks)

    report = Report(job.operation, verbosity, out)
    if not tasks and not refused:
        if verbosity >= 0:
            print(f"{job.operation}: nothing to do: no input files under {src_root}", file=out)
        return EXIT_OK
    out_existed, manifest_existed = os.path.lexists(dst_root), manifest_path(dst_root).exists()
    try:
        tasks = _resume(report, job, src_root, dst_root, tasks, force=force)
    except JobMismatchError as exc:
        return error(str(exc))
    for result in refused:
        report.add(result)

    show_bar = progress if progress is not None else (sys.stderr.isatty() and len(tasks) >= PROGRESS_MIN_FILES)
    planned = len(report.results) + len(tasks)
    if show_bar:
        from tqdm import tqdm

        report.bar = tqdm(total=planned, initial=planned - len(tasks), unit="file", file=sys.stderr,
                          desc=job.operation, dynamic_ncols=True)
    interrupted = _collect(report, (backend or LocalPool(jobs)).run(job, tasks),
                           leave_out_as_it_was=(Path(dst_root), out_existed, manifest_existed))

    if verbosity >= 0 or any(r.status == "failed" for r in report.results):
        print(report.summary(time.perf_counter() - started, interrupted), file=out)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if any(r.status == "failed" for r in report.results) else EXIT_OK


def _collect(report: Report, results: Results, *, leave_out_as_it_was: tuple[Path, bool, bool]) -> bool:
    """Add every result to ``report`` as it arrives; True when Ctrl-C stopped the run.

    A backend that refuses the whole job before any file (a Dask cluster whose workers cannot
    run it) raises its error here; then OUT is left as it was: the manifest this run created and
    an OUT it created are removed again.
    """
    ran = False
    try:
        for result in results:
            ran = True
            report.add(result)
    except KeyboardInterrupt:
        return True
    except DicomCryptError:
        if not ran:
            dst_root, out_existed, manifest_existed = leave_out_as_it_was
            report.discard_manifest(delete=not manifest_existed)
            if not out_existed:
                _remove_if_empty(dst_root)
        raise
    finally:
        results.close()  # stopped early: queued files cancelled, running ones finish
        if report.bar is not None:
            report.bar.close()
        report.close_manifest()
    return False


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty, or gone: nothing of ours to undo


def _resume(
    report: Report, job: Job, src_root: Path, dst_root: str | os.PathLike[str], tasks: list[Task], *, force: bool
) -> list[Task]:
    """Open the job's manifest in OUT into ``report`` (for a folder IN; a single file has nothing
    to resume), report the files already done as skipped, and return the tasks still to do.
    Raises :class:`JobMismatchError` for another job's OUT; a manifest that cannot be kept is
    warned about and the batch runs without it, as before manifests."""
    if not src_root.is_dir():
        return tasks
    try:
        report.manifest = Manifest.open(dst_root, job_identity(job, src_root))
        tasks, already_done = report.manifest.plan(tasks, force=force)
    except JobMismatchError:
        raise
    except ManifestError as exc:
        report.drop_manifest(exc)
        return tasks
    for result in already_done:
        report.add(result, record=False)
    return tasks
