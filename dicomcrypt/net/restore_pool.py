"""Where the receiver restores: a pool of worker processes, so associations restore in parallel.

DIMSE is request-then-answer on one association, so a receiver's parallelism comes from its
concurrent associations; restoring in each association's thread made them queue for the GIL
(the codec, DICOM decoding and writing are Python and numpy work). Each association thread
now hands its instance to this pool and waits for the result::

    association thread ──slot (bounded)──> worker process: StoreHandler.handle(raw, decode, context)
          │  waits; its peer waits for the answer          │ decide, restore, file (fsync)
          └─< InstanceResult <─────────────────────────────┘
          answer on the wire, ledger and log in the receiver's process

- The work unit is :meth:`StoreHandler.handle`, unchanged: the same checks, statuses and
  quarantine as in-thread, and the answer still goes out only once the instance is on disk.
- The instance travels as the path of the file pynetdicom wrote while it arrived
  (``STORE_RECV_CHUNKED_DATASET``: it is never held in memory whole), read by the worker.
- Back-pressure, never loss: at most ``workers + queue_depth`` instances are handed over at a
  time; an association that finds no free slot waits for one (its peer waits for the answer, as
  it would for a slow disk). The association limits bound how many can wait.
- A worker that dies (out of memory, a crash) answers 0xA700 Out of Resources for the instances
  it held, a transient refusal the sender retries, and the pool is rebuilt.

Each worker builds its own :class:`StoreHandler` (keys, models, quarantine) from the receiver's
configuration once, without the TLS contexts (the network stays in the receiver's process). A
gateway's workers put what they restore in the forward queue themselves (SQLite, safe from
several processes, :mod:`dicomcrypt.net.forward_queue`); the one drain that sends it downstream
stays in the receiver's process.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomcrypt.status import OUT_OF_RESOURCES
from dicomcrypt.net.store_handler import InstanceResult, StoreHandler
from dicomcrypt.runner.worker import spawn_pool

if TYPE_CHECKING:
    from dicomcrypt.net.scp import ReceiverConfig

__all__ = ["RestorePool", "discard_partial_data_set", "handle_received"]

_HANDLER: StoreHandler | None = None


def _start_worker(config: ReceiverConfig) -> None:
    """Pool initializer: the worker's own handler, built once (keys read, quarantine set up)."""
    global _HANDLER
    from dicomcrypt.net.forward_queue import ForwardQueue
    from dicomcrypt.net.scp import make_quarantine

    queue = ForwardQueue(config.spool_dir) if config.forward is not None and config.spool_dir is not None else None
    _HANDLER = StoreHandler(config, make_quarantine(config), queue)


def _ready() -> bool:
    return _HANDLER is not None


def handle_received(handler: StoreHandler, source: Path | bytes, context: dict[str, Any]) -> InstanceResult:
    """``handler.handle`` for an instance given as its Part 10 file or bytes (decoded lazily)."""
    import pydicom

    try:
        raw = source.read_bytes() if isinstance(source, Path) else source
    except OSError as exc:  # the received file vanished: a transient, local failure
        return InstanceResult(OUT_OF_RESOURCES, "refused", f"received data set unreadable ({exc.strerror})")
    return handler.handle(raw, lambda: pydicom.dcmread(io.BytesIO(raw)), context)


def _handle_in_worker(source: Path | bytes, context: dict[str, Any]) -> InstanceResult:
    assert _HANDLER is not None, "worker not initialised"
    return handle_received(_HANDLER, source, context)


def discard_partial_data_set(assoc: Any) -> None:
    """Delete the file of a data set still arriving when its connection closed (an abort, a
    stalled or oversize sender): pynetdicom deletes only the files of complete requests."""
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    partial = getattr(message, "_data_set_file", None)
    if partial is None:
        return
    try:
        partial.close()
        Path(partial.name).unlink(missing_ok=True)
    except OSError:
        pass


class RestorePool:
    """``handle(source, context) -> InstanceResult`` run in ``workers`` processes; see the module
    docstring. Thread-safe: each association thread calls :meth:`handle` and waits."""

    def __init__(self, config: ReceiverConfig, workers: int, queue_depth: int | None = None) -> None:
        self.workers = max(1, workers)
        self.queue_depth = self.workers if queue_depth is None else max(0, queue_depth)
        self._config = dataclasses.replace(config, ssl_context=None, forward_ssl_context=None)
        self._slots = threading.BoundedSemaphore(self.workers + self.queue_depth)
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> RestorePool:
        """Spawn the workers now (not at the first instance, which would then wait for them)."""
        pool = self._executor()
        for future in [pool.submit(_ready) for _ in range(self.workers)]:
            future.result()
        return self

    def handle(self, source: Path | bytes, context: dict[str, Any]) -> InstanceResult:
        """Restore (or keep, or refuse) one instance in a worker; waits for a free slot first."""
        with self._slots:
            pool = self._executor()
            try:
                return pool.submit(_handle_in_worker, source, context).result()
            except BrokenProcessPool:
                self._rebuild(pool)
                return InstanceResult(OUT_OF_RESOURCES, "refused", "restore worker failed; try again")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = spawn_pool(self.workers, _start_worker, (self._config,))
            return self._pool

    def _rebuild(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)
