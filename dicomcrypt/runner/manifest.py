"""The job manifest: what a batch planned and what became of each file, kept in OUT so that
re-running the same command resumes it, and ``dicomcrypt jobs status OUT`` can say where it is.

One SQLite file, ``OUT/.dicomcrypt-manifest.sqlite`` (hidden, so the walkers never take it for an
input), in WAL mode, written only by the client process that runs the batch: backends and
workers never touch it, they return :class:`~dicomcrypt.runner.tasks.FileResult` records and the
client records each one as it arrives.

- the **job identity** is stored once: the operation, IN, and what decides the outputs (target key
  ids, mode, model, latent format, identity-protection certificates; for decrypt the identity
  keys; for rekey the new targets and ``keep``). Never key material: key ids and public-key
  fingerprints only. The keys that merely *open* files (decrypt, rekey) are not part of it, so a
  re-run with one more key retries the files that needed it. Another job against the same OUT is
  refused (:class:`~dicomcrypt.errors.JobMismatchError`).
- a **row per input**: its path relative to IN, size and modification time, the output path, and
  the outcome (done / passed / skipped / failed, or none yet: "left"), mode, error, time taken and
  attempts. Paths and outcomes only: never patient data.

Resuming (:meth:`Manifest.plan`) skips a file whose row says done or passed when the input still
has the recorded size and mtime and :func:`output_complete` accepts its output (there, the size
recorded, and a readable DICOM preamble and File Meta Information; no full decode). Everything
else runs: failed files are retried, a done file whose output is damaged or whose input changed is
redone over its own output.

Inputs are identified by size and mtime (in nanoseconds), not by a content hash: hashing means
reading every input on the client, which for an archive on a shared file system doubles the I/O of
small files (even a 64 kB head and tail is a second read of most instances), and the job's own read
happens on the workers. Size and mtime are what ``make`` and ``rsync`` trust for the same question.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dicomcrypt.errors import JobMismatchError, ManifestError
from dicomcrypt.runner.jobs import DecryptJob, EncryptJob, Job, RekeyJob
from dicomcrypt.runner.tasks import FileResult, Task

__all__ = [
    "ALREADY_DONE_NOTE",
    "MANIFEST_NAME",
    "JobStatus",
    "Manifest",
    "job_identity",
    "manifest_path",
    "output_complete",
]

MANIFEST_NAME = ".dicomcrypt-manifest.sqlite"
ALREADY_DONE_NOTE = "already done (job manifest)"
_SCHEMA_VERSION = 1
_COMMIT_SECONDS = 0.5
"""Results are committed at most this long after they arrive: a client killed outright loses at
most that much bookkeeping (the next run then finds those outputs and skips them as existing)."""
_FINISHED = ("done", "passed")
_OUTCOMES = ("done", "passed", "skipped", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    identity TEXT NOT NULL,
    started REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    rel TEXT PRIMARY KEY,
    src_size INTEGER,
    src_mtime_ns INTEGER,
    dst TEXT,
    outcome TEXT,
    action TEXT,
    mode TEXT,
    note TEXT,
    error TEXT,
    bytes_out INTEGER,
    seconds REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL
);
"""


def manifest_path(out_root: str | os.PathLike[str]) -> Path:
    """Where the manifest of the job writing into ``out_root`` lives."""
    return Path(out_root) / MANIFEST_NAME


def job_identity(job: Job, src_root: Path) -> dict[str, Any]:
    """What makes two runs the same job, as JSON-ready values: no key material, only key ids and
    public fingerprints (see the module docstring for what is left out and why)."""
    identity: dict[str, Any] = {"operation": job.operation, "input": str(src_root.resolve())}
    if isinstance(job, EncryptJob):
        s = job.settings
        identity.update(
            targets=sorted(s.key_ids),
            mode=s.mode.name.lower(),
            model=s.model,
            latent_format=s.latent_format,
            protect_identity=None if s.identity is None else {
                "certificates": sorted(_fingerprint(c.public_bytes(_der())) for c in s.identity.certificates),
                "cipher": s.identity.cipher,
            },
        )
    elif isinstance(job, DecryptJob):
        identity["identity_keys"] = sorted(_public_key_fingerprint(k.private_key) for k in job.identity_keys)
        if job.output_syntax is not None or job.uid_root is not None:  # absent: as before these options
            identity.update(output_syntax=job.output_syntax, uid_root=job.uid_root)
    elif isinstance(job, RekeyJob):
        identity.update(to=sorted(t.key_id for t in job.to), keep=job.keep)
    return identity


def output_complete(dst: str | os.PathLike[str], size: int | None) -> bool:
    """Whether an output looks whole without decoding it: it exists, has the size recorded (when
    one was), and starts with a DICOM preamble and readable File Meta Information."""
    from pydicom.filereader import read_file_meta_info

    try:
        if size and os.stat(dst).st_size != size:
            return False
        meta = read_file_meta_info(dst)
    except Exception:  # missing, unreadable, truncated: pydicom raises several kinds
        return False
    return "TransferSyntaxUID" in meta


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands (``dicomcrypt jobs status``)."""

    identity: dict[str, Any]
    started: float
    updated: float
    counts: dict[str, int]
    """done, passed, skipped, failed, left (planned, no outcome yet), total."""
    failed: tuple[tuple[str, str, int], ...]
    """(input path relative to IN, error, attempts) of each failed file, by path."""


class Manifest:
    """An open manifest; build with :meth:`open` (the batch's client) or :meth:`read` (status)."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._last_commit = time.monotonic()

    @classmethod
    def open(cls, out_root: str | os.PathLike[str], identity: dict[str, Any]) -> Manifest:
        """The manifest of this job in ``out_root``, created if absent. Raises
        :class:`JobMismatchError` when OUT holds another job's, :class:`ManifestError` when it
        cannot be created or read (OUT not writable, a damaged file)."""
        path = manifest_path(out_root)
        existed = path.exists()
        try:
            Path(out_root).mkdir(parents=True, exist_ok=True)
            path.touch()  # the file system's own reason (read-only, full), not SQLite's
            db = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise ManifestError(f"cannot keep the job manifest {path}: {_reason(exc)}") from None
        try:
            with db:
                db.executescript(_SCHEMA)
                row = db.execute("SELECT version, identity FROM job WHERE id = 1").fetchone()
                now = time.time()
                if row is None:
                    db.execute("INSERT INTO job VALUES (1, ?, ?, ?, ?)",
                               (_SCHEMA_VERSION, _dumps(identity), now, now))
                else:
                    _check_same_job(path, row, identity)
        except JobMismatchError:
            db.close()
            raise
        except (OSError, sqlite3.Error) as exc:
            db.close()
            if not existed:  # half-created (a full disk): leave nothing behind
                _remove(path)
            raise ManifestError(f"cannot keep the job manifest {path}: {_reason(exc)}") from None
        return cls(path, db)

    @classmethod
    def read(cls, out_root: str | os.PathLike[str]) -> Manifest:
        """An existing manifest, to report on. Raises :class:`ManifestError` if there is none."""
        path = manifest_path(out_root)
        if not path.is_file():
            raise ManifestError(
                f"no job manifest in {out_root} (looked for {path}): not the OUT of an encrypt, decrypt "
                "or rekey of a folder, or written before manifests existed"
            )
        try:
            db = _connect(path)
            db.execute("SELECT 1 FROM job").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise ManifestError(f"cannot read the job manifest {path}: {_reason(exc)}") from None
        return cls(path, db)

    def plan(self, tasks: Sequence[Task], *, force: bool) -> tuple[list[Task], list[FileResult]]:
        """Store the planned ``tasks``; return those still to run and a ``skipped`` result (with
        :data:`ALREADY_DONE_NOTE`) for each finished one. ``force`` re-does (and re-records) all."""
        known = {row[0]: row[1:] for row in self._db.execute(
            "SELECT rel, src_size, src_mtime_ns, outcome, bytes_out FROM files")}
        to_run: list[Task] = []
        finished: list[FileResult] = []
        planned: list[tuple[object, ...]] = []
        for task in tasks:
            size, mtime_ns = _stat(task.src)
            row = known.get(task.rel)
            if row is not None and row[2] in _FINISHED and not force:
                if (row[0], row[1]) == (size, mtime_ns) and output_complete(task.dst, row[3]):
                    finished.append(FileResult(task.rel, "skipped", note=ALREADY_DONE_NOTE))
                    continue
                task = replace(task, overwrite=True)  # our own output, damaged or stale: redo it
            to_run.append(task)
            planned.append((task.rel, size, mtime_ns, task.dst))
        try:
            with self._db:
                self._db.executemany(
                    "INSERT INTO files (rel, src_size, src_mtime_ns, dst) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (rel) DO UPDATE SET src_size = excluded.src_size, "
                    "src_mtime_ns = excluded.src_mtime_ns, dst = excluded.dst, outcome = NULL, action = NULL, "
                    "mode = NULL, note = NULL, error = NULL, bytes_out = NULL, seconds = NULL",
                    planned,
                )
                self._touch()
        except sqlite3.Error as exc:
            raise ManifestError(f"cannot write the job manifest {self.path}: {_reason(exc)}") from None
        return to_run, finished

    def record(self, result: FileResult) -> None:
        """Store one file's outcome (committed within :data:`_COMMIT_SECONDS`, and on :meth:`close`)."""
        try:
            self._db.execute(
                "INSERT INTO files (rel, outcome, action, mode, note, error, bytes_out, seconds, attempts, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (rel) DO UPDATE SET outcome = excluded.outcome, "
                "action = excluded.action, mode = excluded.mode, note = excluded.note, error = excluded.error, "
                "bytes_out = excluded.bytes_out, seconds = excluded.seconds, attempts = attempts + 1, "
                "updated = excluded.updated",
                (result.rel, result.status, result.action or None, result.mode, result.note or None, result.error,
                 result.bytes_out or None, result.seconds, time.time()),
            )
            if time.monotonic() - self._last_commit >= _COMMIT_SECONDS:
                self.commit()
        except sqlite3.Error as exc:
            raise ManifestError(f"cannot write the job manifest {self.path}: {_reason(exc)}") from None

    def commit(self) -> None:
        self._touch()
        self._db.commit()
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit what was recorded and close; safe to call twice."""
        try:
            if self._db.in_transaction:
                self.commit()
        except sqlite3.Error as exc:
            raise ManifestError(f"cannot write the job manifest {self.path}: {_reason(exc)}") from None
        finally:
            self._db.close()

    def discard(self) -> None:
        """Close and delete this manifest: for a job refused before it ran anything (a cluster
        whose workers cannot run it), so OUT is left as it was."""
        self._db.close()
        _remove(self.path)

    def status(self) -> JobStatus:
        """Counts, failures and the job identity, as stored."""
        identity, started, updated = self._db.execute("SELECT identity, started, updated FROM job").fetchone()
        counts = dict.fromkeys((*_OUTCOMES, "left"), 0)
        for outcome, n in self._db.execute("SELECT outcome, COUNT(*) FROM files GROUP BY outcome"):
            counts["left" if outcome is None else outcome] += n
        counts["total"] = sum(counts.values())
        failed = tuple(self._db.execute(
            "SELECT rel, COALESCE(error, ''), attempts FROM files WHERE outcome = 'failed' ORDER BY rel"))
        return JobStatus(json.loads(identity), started, updated, counts, failed)

    def _touch(self) -> None:
        self._db.execute("UPDATE job SET updated = ? WHERE id = 1", (time.time(),))


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")  # WAL: a crash keeps the database whole
    return db


def _check_same_job(path: Path, row: tuple[int, str], identity: dict[str, Any]) -> None:
    version, stored_text = row
    if version != _SCHEMA_VERSION:
        raise ManifestError(f"job manifest {path} has version {version}; this dicomcrypt reads {_SCHEMA_VERSION}")
    stored = json.loads(stored_text)
    if stored == json.loads(_dumps(identity)):
        return
    differ = sorted(k for k in stored.keys() | identity.keys() if stored.get(k) != identity.get(k))
    raise JobMismatchError(
        f"{path.parent} holds the output of another job ({stored.get('operation')} of {stored.get('input')}; "
        f"differs in: {', '.join(differ)}); not mixed with this one. To resume, repeat that job's command; "
        f"to start over, choose a new OUT, or delete {path} and the outputs under {path.parent}"
    )


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _stat(path: str) -> tuple[int | None, int | None]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def _fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _public_key_fingerprint(private_key: Any) -> str:
    from cryptography.hazmat.primitives.serialization import PublicFormat

    return _fingerprint(private_key.public_key().public_bytes(_der(), PublicFormat.SubjectPublicKeyInfo))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(f"{path}{suffix}")
        except OSError:
            pass

