"""Batch work: plan tasks (IN -> OUT), run them in worker processes, yield a result per file.

The library half of ``encrypt``, ``decrypt`` and ``rekey`` (the CLI keeps the arguments, the
progress bar, the report and the exit codes); ``send`` prepares its sealing processes with the
same :func:`~dicomcrypt.runner.worker.prepare_process`.

    job = EncryptJob(EncryptionSettings.build(key=key, mode="lossless"))
    tasks, refused = guard_inputs(plan(Path("in"), "out"))
    for result in LocalPool(workers=4).run(job, tasks):
        ...

- :mod:`~dicomcrypt.runner.tasks`: :class:`Task`, :class:`FileResult`, :func:`plan`, :func:`guard_inputs`;
- :mod:`~dicomcrypt.runner.jobs`: :class:`EncryptJob`, :class:`DecryptJob`, :class:`RekeyJob`;
- :mod:`~dicomcrypt.runner.worker`: process set-up and the :class:`Worker` that runs one task;
- :mod:`~dicomcrypt.runner.pool`: :class:`Backend` (the interface) and :class:`LocalPool`;
- :mod:`~dicomcrypt.runner.manifest`: the job :class:`Manifest` kept in OUT (resume, status),
  written by the client only.
- :mod:`~dicomcrypt.runner.dask`: :class:`DaskBackend`, the same jobs on a Dask cluster
  (imported on first use: ``distributed`` loads only when a cluster is asked for).
"""

from typing import Any

from dicomcrypt.runner.jobs import DecryptJob, EncryptJob, Job, Operation, RekeyJob
from dicomcrypt.runner.manifest import JobStatus, Manifest, job_identity
from dicomcrypt.runner.pool import Backend, LocalPool
from dicomcrypt.runner.tasks import FileResult, Status, Task, guard_inputs, plan
from dicomcrypt.runner.worker import Worker

__all__ = [
    "Backend",
    "DaskBackend",
    "DecryptJob",
    "EncryptJob",
    "FileResult",
    "Job",
    "JobStatus",
    "LocalPool",
    "Manifest",
    "Operation",
    "RekeyJob",
    "Status",
    "Task",
    "Worker",
    "guard_inputs",
    "job_identity",
    "plan",
]


def __getattr__(name: str) -> Any:
    if name == "DaskBackend":
        from dicomcrypt.runner.dask import DaskBackend

        return DaskBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
