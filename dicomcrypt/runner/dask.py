"""The second :class:`~dicomcrypt.runner.pool.Backend`: a job's tasks on a Dask cluster.

``DaskBackend("tcp://sched:8786")`` (a running scheduler), ``"tls://sched:8786"`` (with a
:class:`distributed.security.Security`) or ``"local:4"`` (a LocalCluster of 4 single-thread
worker processes on this machine, started and closed here). IN and OUT are paths every worker
sees (a shared file system). What it guarantees, beside the local pool's rules:

- **keys never travel in clear**: over ``tcp://`` the job is pickled with every secret replaced
  by its key id, and each worker loads the secrets from the key files the user named (the same
  absolute paths, on the worker) and finds them by id; a job whose secrets have no key file
  (identity keys, ``--protect-identity``'s UID secret) is refused. Over ``tls://`` and
  ``local:N`` (loopback) the job carries its keys as the local pool's does;
- **fail fast, once**: before any task runs, every worker is asked (``client.run``) whether it
  built the job (read its keys), sees IN and can write OUT; any "no" is one
  :class:`~dicomcrypt.errors.ClusterError` naming the workers;
- **batched**: many small files per Dask task (up to ``max_files`` or ``max_bytes`` of input),
  a file over ``max_bytes`` alone, so the scheduler's per-task cost (milliseconds) is paid per
  batch, not per file; a small job is cut into at least 4 batches per worker thread, so every
  worker gets some;
- **idempotent tasks**: outputs are atomic and never clobbered; an output that was absent when
  the job started may be replaced (it can only be this job's own, from an attempt whose worker
  died), so a task run twice leaves one complete output; temporary files of dead attempts are
  swept at the end;
- **worker deaths**: Dask re-runs a dead worker's tasks (``retries`` covers a task that raised,
  the scheduler's ``distributed.scheduler.allowed-failures`` covers deaths); a batch that keeps
  killing workers is split into single files, and a file that still does is reported failed with
  :data:`~dicomcrypt.runner.pool.CRASH_ERROR`: the job never hangs on it;
- results are yielded per batch as batches finish; the Dask dashboard works as usual.

Each worker process is prepared once by a :class:`_JobPlugin` (one compute thread, warnings
off; its SIGINT stays its operator's) and keeps one :class:`~dicomcrypt.runner.worker.Worker`
per job, so the model is loaded once per process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import pickle
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin

from dicomcrypt.errors import ClusterError, InsecureClusterError, InvalidInputError
from dicomcrypt.runner.jobs import Job
from dicomcrypt.runner.pool import CRASH_ERROR, Results
from dicomcrypt.runner.tasks import FileResult, Task
from dicomcrypt.runner.worker import Worker, prepare_process

if TYPE_CHECKING:
    from distributed import Client
    from distributed.security import Security

    from dicomcrypt.crypto import KeyRing

__all__ = ["DaskBackend", "batch_tasks", "check_address", "cluster_security"]

MAX_BATCH_BYTES = 64 * 1024 * 1024
MAX_BATCH_FILES = 50
_BATCHES_PER_THREAD = 4
_SCHEMES = ("tcp://", "tls://")
_CHECK_TIMEOUT = "60s"


def check_address(text: str) -> str:
    """``tcp://host:port``, ``tls://host:port`` or ``local:N``; raises InvalidInputError otherwise."""
    if text.startswith(_SCHEMES) and len(text) > len("tcp://"):
        return text
    if text.startswith("local:") and text[len("local:"):].isdigit() and int(text[len("local:"):]) >= 1:
        return text
    raise InvalidInputError(
        f"cluster address {text!r}: give tcp://HOST:PORT or tls://HOST:PORT (a Dask scheduler), or local:N"
    )


def cluster_security(ca: Path | None, cert: Path | None, key: Path | None) -> Security | None:
    """The client side of a TLS cluster, or None when no TLS file is given."""
    if ca is None and cert is None and key is None:
        return None
    if ca is None or cert is None:
        raise InvalidInputError("a TLS cluster needs --cluster-tls-ca and --cluster-tls-cert (and its key)")
    from distributed.security import Security

    return Security(
        tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key) if key else None,
        require_encryption=True,
    )


def batch_tasks(
    tasks: Sequence[Task], sizes: Sequence[int], *, max_bytes: int = MAX_BATCH_BYTES,
    max_files: int = MAX_BATCH_FILES,
) -> list[list[Task]]:
    """Consecutive tasks grouped up to ``max_files`` files or ``max_bytes`` of input; a file
    larger than ``max_bytes`` is a batch of its own."""
    batches: list[list[Task]] = []
    current: list[Task] = []
    current_bytes = 0
    for task, size in zip(tasks, sizes, strict=True):
        if current and (current_bytes + size > max_bytes or len(current) >= max_files):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(task)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


@dataclasses.dataclass(frozen=True, eq=False)
class DaskBackend:
    """Runs a job's tasks on the Dask cluster at ``address`` (see the module docstring).

    ``key_paths``: the key files (or folders, keyring .toml) the job's secrets came from, as
    absolute paths valid on every worker; needed over ``tcp://``.
    """

    address: str
    security: Security | None = None
    key_paths: tuple[Path, ...] = ()
    max_bytes: int = MAX_BATCH_BYTES
    max_files: int = MAX_BATCH_FILES
    retries: int = 2

    def __post_init__(self) -> None:
        check_address(self.address)
        if self.security is not None and not self.address.startswith("tls://"):
            raise InvalidInputError("--cluster-tls-* options need a tls:// cluster address")

    @property
    def carries_keys(self) -> bool:
        """Whether the job may travel with its secrets: TLS comms, or a cluster on loopback."""
        return not self.address.startswith("tcp://")

    def run(self, job: Job, tasks: Sequence[Task]) -> Results:
        if not tasks:
            return
        plugin = _JobPlugin(uuid.uuid4().hex, *self._pack(job))
        with self._client() as client:
            client.register_plugin(plugin, name=plugin.name)
            try:
                _check_workers(client, plugin.token, tasks)
                yield from self._run_batches(client, plugin.token, tasks)
            finally:
                try:
                    client.unregister_worker_plugin(plugin.name)
                except Exception:  # noqa: BLE001 - the cluster may already be gone
                    pass
        _sweep_temporaries(tasks)

    def _pack(self, job: Job) -> tuple[bytes, bool, tuple[str, ...]]:
        """The job as bytes; over plain TCP without its secrets (see :class:`_SecretFreePickler`)."""
        if self.carries_keys:
            return pickle.dumps(job), False, ()
        buffer = io.BytesIO()
        pickler = _SecretFreePickler(buffer)
        pickler.dump(job)
        if pickler.key_ids and not self.key_paths:
            raise InsecureClusterError(
                "over plain tcp:// the workers load the keys from their own key files, and none were given; "
                "use a tls:// cluster or local:N to send the job with its keys"
            )
        return buffer.getvalue(), True, tuple(str(Path(p).resolve()) for p in self.key_paths)

    @contextmanager
    def _client(self) -> Iterator[Client]:
        from distributed import Client, LocalCluster

        try:
            if self.address.startswith("local:"):
                # Loopback only; the dashboard on its usual port (or a free one).
                cluster = LocalCluster(
                    n_workers=int(self.address.removeprefix("local:")), threads_per_worker=1, processes=True,
                    host="127.0.0.1", silence_logs=40,
                )
                client = Client(cluster)
            else:
                cluster = None
                client = Client(self.address, security=self.security, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from exc
        if sys.stderr.isatty():
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        try:
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def _run_batches(self, client: Client, token: str, tasks: Sequence[Task]) -> Results:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        existed = {t.dst for t in tasks if os.path.lexists(t.dst)}
        # An output absent now can only be this job's own later (an attempt whose worker died).
        ready = [t if t.overwrite or t.dst in existed else dataclasses.replace(t, overwrite=True) for t in tasks]
        # Small jobs: at least _BATCHES_PER_THREAD batches per worker thread, so every worker works.
        threads = max(1, sum(client.nthreads().values()))
        max_files = max(1, min(self.max_files, -(-len(tasks) // (_BATCHES_PER_THREAD * threads))))
        queue = batch_tasks(ready, [_size(t.src) for t in tasks], max_bytes=self.max_bytes, max_files=max_files)
        queue.reverse()  # popped from the end: the plan's order
        in_flight: dict[str, list[Task]] = {}
        pending = as_completed()
        counter = iter(range(sys.maxsize))

        def fill() -> None:
            limit = 2 * max(1, sum(client.nthreads().values())) + 2
            while queue and len(in_flight) < limit:
                batch = queue.pop()
                key = f"dicomcrypt-{token[:8]}-{next(counter)}"
                future = client.submit(_run_batch, token, batch, key=key, retries=self.retries, pure=False)
                in_flight[key] = batch
                pending.add(future)

        try:
            fill()
            for future in pending:
                batch = in_flight.pop(future.key)
                try:
                    results = future.result()
                except KilledWorker:
                    if len(batch) > 1:  # find the file that kills workers: each alone
                        queue.extend([single] for single in reversed(batch))
                        results = []
                    else:
                        results = [FileResult(batch[0].rel, "failed", error=CRASH_ERROR)]
                except Exception as exc:  # noqa: BLE001 - the task itself broke: its files failed
                    error = f"internal error: {type(exc).__name__}: {exc}"
                    results = [FileResult(t.rel, "failed", error=error) for t in batch]
                yield from results
                fill()
        finally:
            # Finished, Ctrl-C, or the caller stopped: nothing new starts; running tasks finish
            # (outputs complete) before a local cluster is closed under them.
            pending.clear()
            try:
                client.cancel(list(client.futures.values()))
                if self.address.startswith("local:"):
                    client.run(_wait_idle)
            except Exception:  # noqa: BLE001 - the cluster is going away anyway
                pass


class _SecretFreePickler(pickle.Pickler):
    """Pickles a job with each site or recipient key replaced by its key id (never the secret)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.key_ids: list[str] = []

    def persistent_id(self, obj: Any) -> Any:
        from dicomcrypt.crypto import Key, RecipientKey
        from dicomcrypt.crypto.cms import IdentityKey
        from dicomcrypt.identity_protection import IdentityProtection

        if isinstance(obj, Key | RecipientKey):
            self.key_ids.append(obj.key_id)
            return ("secret", obj.key_id)
        if isinstance(obj, IdentityKey | IdentityProtection):
            raise InsecureClusterError(
                "--identity-key and --protect-identity hold secrets the workers cannot load from a key file; "
                "over plain tcp:// they would travel in clear: use a tls:// cluster (--cluster-tls-*) or local:N"
            )
        return None


class _KeyFileUnpickler(pickle.Unpickler):
    """Unpickles a :class:`_SecretFreePickler` job, each key id resolved in this worker's key files."""

    def __init__(self, data: bytes, key_paths: tuple[str, ...]) -> None:
        super().__init__(io.BytesIO(data))
        self.key_paths = key_paths
        self.ring: KeyRing | None = None

    def persistent_load(self, pid: Any) -> Any:
        from dicomcrypt.crypto import KeyRing

        if self.ring is None:  # read the key files once, and only for a job that has secrets
            self.ring = KeyRing.load([Path(p) for p in self.key_paths])
        kind, key_id = pid
        secret = self.ring.get(key_id) if kind == "secret" else None
        if secret is None:
            raise ClusterError(f"no key with id {key_id} in {', '.join(self.key_paths)}")
        return secret


# ----------------------------------------------------------------------------- on the workers

_WORKERS: dict[str, Worker] = {}
_FAILURES: dict[str, str] = {}


class _JobPlugin(WorkerPlugin):
    """Prepares each worker process once and builds its :class:`Worker` for one job; a failure
    (a key file missing there) is kept for :func:`_check_workers` to report, not raised."""

    def __init__(self, token: str, job: bytes, sealed: bool, key_paths: tuple[str, ...]) -> None:
        self.token = token
        self.name = f"dicomcrypt-job-{token}"
        self.job = job
        self.sealed = sealed
        self.key_paths = key_paths

    def setup(self, worker: Any) -> None:
        prepare_process(ignore_sigint=False)
        try:
            job = _KeyFileUnpickler(self.job, self.key_paths).load() if self.sealed else pickle.loads(self.job)
            _WORKERS[self.token] = Worker(job)
        except Exception as exc:  # noqa: BLE001 - reported once per worker by _check_workers
            _FAILURES[self.token] = str(exc) or type(exc).__name__

    def teardown(self, worker: Any) -> None:
        _WORKERS.pop(self.token, None)
        _FAILURES.pop(self.token, None)


def _worker_problem(token: str, src: str, out_dir: str) -> str | None:
    """Why this worker cannot run the job (its key, IN, OUT), or None."""
    if token in _FAILURES:
        return f"cannot load the job's keys: {_FAILURES[token]}"
    if token not in _WORKERS:
        return "the job was not installed (worker plugin missing)"
    if not os.path.exists(src):
        return f"does not see the input {src} (IN and OUT must be on a file system every worker shares)"
    probe = Path(out_dir)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".dicomcrypt-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return f"cannot write the output folder {out_dir}: {exc.strerror or exc}"
    return None


def _check_workers(client: Client, token: str, tasks: Sequence[Task]) -> None:
    """One ClusterError when any worker cannot run the job; none when every one can."""
    if not client.nthreads():
        raise ClusterError("the Dask cluster has no workers")
    out_dir = os.path.commonpath([os.path.dirname(os.path.abspath(t.dst)) for t in tasks])
    answers = client.run(_worker_problem, token, tasks[0].src, out_dir)
    problems = {address: problem for address, problem in answers.items() if problem}
    if problems:
        listed = "; ".join(f"{address}: {problem}" for address, problem in sorted(problems.items())[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ClusterError(f"{len(problems)} of {len(answers)} Dask workers cannot run this job: {listed}{more}")


def _run_batch(token: str, tasks: list[Task]) -> list[FileResult]:
    """What a Dask task runs: a batch of files, with this process's worker for the job."""
    worker = _WORKERS.get(token)
    if worker is None:  # a worker that joined after the check and cannot load the keys
        raise ClusterError(_FAILURES.get(token, "the job is not installed on this worker"))
    return [worker.run(task) for task in tasks]


async def _wait_idle(dask_worker: Any) -> None:
    """Returns once this worker runs no task (client.run: a local cluster is closed after)."""
    for _ in range(600):
        if not dask_worker.state.executing_count:
            return
        await asyncio.sleep(0.1)


def _sweep_temporaries(tasks: Sequence[Task]) -> None:
    """Remove the temporary files that attempts killed mid-write left next to this job's outputs."""
    by_dir: dict[str, set[str]] = {}
    for task in tasks:
        by_dir.setdefault(os.path.dirname(task.dst) or ".", set()).add(os.path.basename(task.dst))
    for directory, names in by_dir.items():
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                stem = entry.name[1:].rsplit(".", 2)[0]  # .NAME.random.tmp -> NAME
                if stem in names:
                    Path(entry.path).unlink(missing_ok=True)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
