"""The same encrypt job on the local pool and on Dask clusters of this machine (not a test).

40 copies of the 512x512 CT (fresh UIDs), lossless, run by: the local pool (``-j 2``), a
``local:1`` and a ``local:2`` LocalCluster, and a 2-worker tcp:// cluster (a ``dask scheduler``
and two ``dask worker`` processes started here), cold and warm (the same workers again: their
processes up and model loaded). For each: wall time (start-up included), instances/s and the
ratio to the local pool. Then the scheduler's own cost per task (no-op tasks). Figures and
the 10-million-instance estimate built on them: docs/scale.md.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cluster.py [--copies 40]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from dicomcrypt.crypto import Key
from dicomcrypt.runner import Backend, DaskBackend, EncryptJob, LocalPool, guard_inputs, plan
from dicomcrypt.settings import EncryptionSettings

DATA = Path(__import__("data_store").__file__).parent / "data"
CT = DATA / "693_UNCR.dcm"
BIN = Path(sys.executable).parent


def make_inputs(folder: Path, copies: int) -> None:
    folder.mkdir(parents=True)
    ds = pydicom.dcmread(CT)
    for i in range(copies):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"ct{i:03}.dcm")


def measure(name: str, backend: Backend, job: EncryptJob, src: Path, dst: Path) -> tuple[str, float, int]:
    """Wall time of the whole job (start-up included) and the number of files."""
    tasks, _ = guard_inputs(plan(src, dst))
    started = time.perf_counter()
    results = list(backend.run(job, tasks))
    wall = time.perf_counter() - started
    assert all(r.status == "done" for r in results), results
    return name, wall, len(results)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_tcp_cluster(workers: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                   address.rsplit(":", 1)[1]], **quiet)]  # type: ignore[call-overload]
    processes += [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--host", "127.0.0.1"],
                                   **quiet) for _ in range(workers)]  # type: ignore[call-overload]
    with Client(address, timeout="60s") as client:
        client.wait_for_workers(workers, timeout=120)
    return address, processes


def scheduler_cost_per_task(address: str, tasks: int = 2000) -> float:
    """Seconds per no-op task through the scheduler (submission to result), on this cluster."""
    from distributed import Client, wait

    with Client(address) as client:
        started = time.perf_counter()
        wait(client.map(_noop, range(tasks), pure=False))
        return (time.perf_counter() - started) / tasks


def _noop(x: int) -> int:
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=40)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key_file = root / "site.key"
        key = Key.generate()
        key.save(key_file)
        make_inputs(root / "in", args.copies)
        job = EncryptJob(EncryptionSettings.build(key=key, mode="lossless"))
        rows = [
            measure("local pool -j 2", LocalPool(2), job, root / "in", root / "out-local"),
            measure("local:1", DaskBackend("local:1"), job, root / "in", root / "out-local1"),
            measure("local:2", DaskBackend("local:2"), job, root / "in", root / "out-local2"),
        ]
        address, processes = start_tcp_cluster(2)
        try:
            backend = DaskBackend(address, key_paths=(key_file,))
            rows.append(measure("tcp:// 2 workers", backend, job, root / "in", root / "out-tcp"))
            # The same workers again: processes up, model loaded (the steady state of a long job).
            rows.append(measure("tcp:// 2, warm", backend, job, root / "in", root / "out-tcp-warm"))
            per_task = scheduler_cost_per_task(address)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(10)

    size_mb = CT.stat().st_size / 1e6
    print(f"{args.copies} x {CT.name} (512x512 CT, {size_mb:.2f} MB), encrypt --mode lossless, {os.cpu_count()} CPUs")
    print(f"{'backend':<18} {'wall s':>7} {'inst/s':>7} {'ratio':>6}")
    base = rows[0][2] / rows[0][1]
    for name, wall, count in rows:
        print(f"{name:<18} {wall:>7.1f} {count / wall:>7.2f} {count / wall / base:>6.2f}")
    print(f"scheduler cost per (no-op) task, tcp:// 2 workers: {per_task * 1000:.2f} ms")


if __name__ == "__main__":
    main()
