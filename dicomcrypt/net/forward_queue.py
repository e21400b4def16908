"""The gateway's persistent forward queue: what ``serve --forward`` has accepted and not yet delivered.

``serve`` answers success once a restored instance is *in this queue* (store-and-forward), so a
PACS outage or a restart of ``serve`` loses nothing. The queue lives in the spool folder (the
``--out`` folder unless ``--spool`` names another), hidden from the study tree::

    SPOOL/.dicomcrypt-forward/queue.sqlite      one row per instance still to deliver
    SPOOL/.dicomcrypt-forward/items/<id>.queued  its Part 10 bytes, written atomically

Durability: the bytes are written to a temporary file, fsynced and renamed first, then the row is
committed (SQLite WAL, ``synchronous=FULL``); only then is success answered. A crash between the
two leaves an orphan file (removed at the next open), never a row without its bytes. Delivery
deletes the row first, then the file, so an instance is never sent twice by two drains.

Several processes may insert at once (a restore worker pool): each process opens its own
connection (WAL, 30 s busy timeout); a connection or lock inherited across ``fork`` is never
reused, and a pickled queue (``spawn``) travels as its folder alone.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomcrypt.errors import ForwardQueueError
from dicomcrypt.files import write_bytes_atomic

__all__ = ["QUEUE_FOLDER", "ForwardQueue", "QueueItem", "QueueStats", "WaitingItem"]

QUEUE_FOLDER = ".dicomcrypt-forward"
"""Hidden, so the study tree's walkers (and ``find -name '*.dcm'``) never take it for data."""
_SUFFIX = ".queued"
_BUSY_TIMEOUT_MS = 30_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item TEXT NOT NULL UNIQUE,
    study_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    enqueued REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS queue_due ON queue (next_attempt, id);
"""


@dataclass(frozen=True)
class QueueItem:
    """One instance waiting to be forwarded."""

    id: int
    path: Path
    study_uid: str
    sop_instance_uid: str
    enqueued: float
    """Unix time it was accepted."""
    attempts: int
    """Attempts the downstream answered with a failure status (unreachable attempts not counted)."""


@dataclass(frozen=True)
class WaitingItem:
    """A waiting instance as ``dicomcrypt jobs queue`` reports it."""

    study_uid: str
    sop_instance_uid: str
    enqueued: float
    attempts: int
    next_attempt: float
    last_error: str | None


@dataclass(frozen=True)
class QueueStats:
    """How much is waiting: for metrics, ``/healthz`` and ``/studies``."""

    depth: int
    bytes: int
    oldest_age_s: float
    """Seconds since the oldest waiting instance was accepted; 0 when the queue is empty."""
    by_study: dict[str, int]


class ForwardQueue:
    """The queue in ``spool``: :meth:`put` from any thread or process, :meth:`due` / :meth:`done` /
    :meth:`retry_later` from the one forwarder that drains it."""

    @classmethod
    def existing(cls, spool: Path) -> ForwardQueue:
        """The queue a gateway keeps in ``spool``, to report on; :class:`ForwardQueueError` if there is none."""
        if not (Path(spool) / QUEUE_FOLDER / "queue.sqlite").is_file():
            raise ForwardQueueError(
                f"no forward queue in {spool} (looked for {Path(spool) / QUEUE_FOLDER / 'queue.sqlite'}): "
                "not the --spool (or --out) folder of a serve --forward"
            )
        return cls(spool)

    def __init__(self, spool: Path) -> None:
        self.folder = Path(spool) / QUEUE_FOLDER
        self.items = self.folder / "items"
        self.db_path = self.folder / "queue.sqlite"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        try:
            self.items.mkdir(parents=True, exist_ok=True)
            with self._locked() as db:
                with db:
                    db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ForwardQueueError(f"cannot keep the forward queue in {self.folder}: {_reason(exc)}") from None
        self._remove_orphans()

    def put(self, data: bytes, *, study_uid: str, sop_instance_uid: str) -> int:
        """Durably queue ``data`` (Part 10 bytes); returns the row id. Raises :class:`ForwardQueueError`."""
        name = f"{time.time_ns()}-{secrets.token_hex(6)}{_SUFFIX}"
        path = self.items / name
        try:
            write_bytes_atomic(data, path)
            now = time.time()
            with self._locked() as db:
                with db:
                    cursor = db.execute(
                        "INSERT INTO queue (item, study_uid, sop_instance_uid, bytes, enqueued, next_attempt) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (name, study_uid, sop_instance_uid, len(data), now, now),
                    )
            return int(cursor.lastrowid or 0)
        except (OSError, sqlite3.Error) as exc:
            path.unlink(missing_ok=True)
            raise ForwardQueueError(f"cannot queue for forwarding: {_reason(exc)}") from None

    def due(self, limit: int = 32) -> list[QueueItem]:
        """The oldest items whose retry time has come, in arrival order."""
        with self._locked() as db:
            rows = db.execute(
                "SELECT id, item, study_uid, sop_instance_uid, enqueued, attempts FROM queue "
                "WHERE next_attempt <= ? ORDER BY id LIMIT ?", (time.time(), limit),
            ).fetchall()
        return [QueueItem(row[0], self.items / row[1], row[2], row[3], row[4], row[5]) for row in rows]

    def done(self, item: QueueItem) -> None:
        """Delivered (or given up): the row goes first, then the bytes."""
        with self._locked() as db:
            with db:
                db.execute("DELETE FROM queue WHERE id = ?", (item.id,))
        item.path.unlink(missing_ok=True)

    def retry_later(self, item: QueueItem, delay_s: float, error: str) -> None:
        """The downstream refused ``item``: count the attempt and try again after ``delay_s``."""
        with self._locked() as db:
            with db:
                db.execute("UPDATE queue SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE id = ?",
                           (time.time() + delay_s, error, item.id))

    def waiting(self, limit: int = 20) -> list[WaitingItem]:
        """The oldest waiting instances with their attempts and last error (for ``jobs queue``)."""
        with self._locked() as db:
            rows = db.execute(
                "SELECT study_uid, sop_instance_uid, enqueued, attempts, next_attempt, last_error FROM queue "
                "ORDER BY id LIMIT ?", (limit,),
            ).fetchall()
        return [WaitingItem(*row) for row in rows]

    def stats(self) -> QueueStats:
        with self._locked() as db:
            depth, size, oldest = db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(enqueued) FROM queue"
                                             ).fetchone()
            by_study = dict(db.execute("SELECT study_uid, COUNT(*) FROM queue GROUP BY study_uid").fetchall())
        age = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        return QueueStats(int(depth), int(size), age, {str(k): int(v) for k, v in by_study.items()})

    def close(self) -> None:
        with self._locked(connect=False):
            if self._db is not None:
                self._db.close()
            self._db = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spool": self.folder.parent}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spool"])  # type: ignore[misc]  # re-open in the receiving process

    @contextmanager
    def _locked(self, *, connect: bool = True) -> Iterator[sqlite3.Connection]:
        """This process's connection under this process's lock. After ``fork`` the parent's lock
        (maybe held by one of its threads) and connection are left alone: new ones are made."""
        if self._pid != os.getpid():
            self._lock, self._db, self._pid = threading.Lock(), None, os.getpid()
        with self._lock:
            if connect and self._db is None:
                db = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                                     isolation_level="DEFERRED")
                db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
                self._db = db
            yield self._db  # type: ignore[misc]  # None only with connect=False

    def _remove_orphans(self) -> None:
        """Files without a row: written, then the process died before the commit (never answered success)."""
        with self._locked() as db:
            known = {row[0] for row in db.execute("SELECT item FROM queue")}
        cutoff = time.time() - 60  # a file another process is about to commit is younger than that
        for path in self.items.glob(f"*{_SUFFIX}"):
            try:
                if path.name not in known and path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                continue


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__
