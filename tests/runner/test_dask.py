"""The Dask backend with the real engine: a ``dask scheduler`` and two ``dask worker`` processes
on loopback (started here, stopped after), and ``local:2``.

Over tcp:// the job travels without its keys (the workers load them from the key file), so the
tests also show that a worker without the key file stops the job with one clear error.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.corpus import TEST_FILES_DIR
from helpers.identity import make_identity
from helpers.orthanc import free_port
from helpers.tls import TLSFiles, make_pki

from dicomcrypt.cli import encrypt as encrypt_cli
from dicomcrypt.cli._common import EXIT_NOT_STARTED
from dicomcrypt.cli.main import main
from dicomcrypt.crypto import Key, KeyRing, RecipientKey
from dicomcrypt.errors import ClusterError, InsecureClusterError
from dicomcrypt.files import read_dicom
from dicomcrypt.identity_protection import IdentityProtection
from dicomcrypt.runner.dask import cluster_security
from dicomcrypt.runner import DaskBackend, DecryptJob, EncryptJob, FileResult, LocalPool, guard_inputs, plan
from dicomcrypt.settings import EncryptionSettings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CORPUS = (
    TEST_FILES_DIR / "CT_small.dcm",
    TEST_FILES_DIR / "MR_small.dcm",
    REPO / "sample_dicom" / "wg04-study" / "US1_J2KR.dcm",
    REPO / "sample_dicom" / "other" / "emri_small_jpeg_ls_lossless.dcm",
    REPO / "sample_dicom" / "other" / "test-SR.dcm",
)


class LoopbackCluster:
    """A real scheduler and ``workers`` single-thread workers (no nanny: SIGKILL kills the worker)."""

    def __init__(self, workers: int, pki: TLSFiles | None = None) -> None:
        self.address = f"{'tls' if pki else 'tcp'}://127.0.0.1:{free_port()}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.env = env
        self.tls = ["--tls-ca-file", str(pki.ca), "--tls-cert", str(pki.server_cert),
                    "--tls-key", str(pki.server_key)] if pki else []
        self.security = cluster_security(pki.ca, pki.client_cert, pki.client_key) if pki else None
        self.scheduler = self._start("scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1],
                                     "--dashboard-address", "127.0.0.1:0", *(["--protocol", "tls"] if pki else []))
        self.workers = [self._start_worker() for _ in range(workers)]
        self.wait_for(workers)

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(BIN / "dask"), *args, *self.tls], env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def _start_worker(self) -> subprocess.Popen[bytes]:
        return self._start("worker", self.address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                           "--no-dashboard")

    def wait_for(self, workers: int) -> None:
        from distributed import Client

        with Client(self.address, security=self.security, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=60)

    def replace_dead_workers(self) -> None:
        self.workers = [w if w.poll() is None else self._start_worker() for w in self.workers]
        self.wait_for(len(self.workers))

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            process.terminate()
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    running = LoopbackCluster(2)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Key, Path]:
    path = tmp_path_factory.mktemp("keys") / "site.key"
    key = Key.generate()
    key.save(path)
    return key, path


def _corpus(root: Path) -> Path:
    root.mkdir()
    for path in CORPUS:
        shutil.copyfile(path, root / path.name)
    return root


def _run(backend: DaskBackend | LocalPool, job: object, src: Path, dst: Path) -> dict[str, FileResult]:
    tasks, refused = guard_inputs(plan(src, dst))
    assert not refused
    return {r.rel: r for r in backend.run(job, tasks)}  # type: ignore[arg-type]


def _restored_pixels(key: Key, encrypted: Path, restored: Path) -> dict[str, np.ndarray]:
    results = _run(LocalPool(1), DecryptJob(KeyRing([key])), encrypted, restored)
    assert all(r.status in ("done", "passed") for r in results.values()), results
    return {rel: read_dicom(restored / rel).pixel_array for rel, r in results.items() if r.status == "done"}


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp")]


def test_cluster_encrypts_like_the_local_pool(cluster: LoopbackCluster, site: tuple[Key, Path], tmp_path: Path):
    key, key_file = site
    src = _corpus(tmp_path / "in")
    job = EncryptJob(EncryptionSettings.build(key=key))
    backend = DaskBackend(cluster.address, key_paths=(key_file,), max_files=2)
    on_cluster = _run(backend, job, src, tmp_path / "cluster")
    local = _run(LocalPool(1), job, src, tmp_path / "local")

    assert sorted(on_cluster) == sorted(local) == sorted(p.name for p in CORPUS)
    assert {rel: (r.status, r.mode) for rel, r in on_cluster.items()} == {
        rel: (r.status, r.mode) for rel, r in local.items()
    }
    assert on_cluster["test-SR.dcm"].status == "passed"
    from_cluster = _restored_pixels(key, tmp_path / "cluster", tmp_path / "restored-cluster")
    from_local = _restored_pixels(key, tmp_path / "local", tmp_path / "restored-local")
    assert sorted(from_cluster) == sorted(from_local) and len(from_cluster) == 4
    for rel, pixels in from_cluster.items():
        np.testing.assert_array_equal(pixels, from_local[rel])
        np.testing.assert_array_equal(pixels, read_dicom(src / rel).pixel_array)
    assert not _temporaries(tmp_path)


def test_a_worker_killed_mid_job_costs_nothing(cluster: LoopbackCluster, site: tuple[Key, Path], tmp_path: Path):
    key, key_file = site
    src = tmp_path / "in"
    src.mkdir()
    for i in range(16):
        shutil.copyfile(TEST_FILES_DIR / "CT_small.dcm", src / f"ct{i:02}.dcm")
    backend = DaskBackend(cluster.address, key_paths=(key_file,), max_files=1)
    tasks, _ = guard_inputs(plan(src, tmp_path / "out"))
    results: list[FileResult] = []
    try:
        for result in backend.run(EncryptJob(EncryptionSettings.build(key=key)), tasks):
            if not results:
                cluster.workers[0].send_signal(signal.SIGKILL)
            results.append(result)
    finally:
        cluster.replace_dead_workers()

    assert sorted(r.rel for r in results) == sorted(t.rel for t in tasks)  # each input once
    assert all(r.status == "done" for r in results), [r for r in results if r.status != "done"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(t.rel for t in tasks)
    assert not _temporaries(tmp_path)
    restored = _restored_pixels(key, tmp_path / "out", tmp_path / "restored")
    original = read_dicom(src / "ct00.dcm").pixel_array
    assert len(restored) == 16 and all(np.array_equal(p, original) for p in restored.values())


def test_a_worker_without_the_key_file_is_one_clear_error(
    cluster: LoopbackCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    key_file = tmp_path / "gone.key"
    Key.generate().save(key_file)
    src = _corpus(tmp_path / "in")
    real_backend = encrypt_cli.cluster_backend

    def key_file_not_on_the_workers(args: object) -> object:
        backend = real_backend(args)  # type: ignore[arg-type]
        key_file.unlink()  # read by this client, absent where the workers look
        return backend

    monkeypatch.setattr(encrypt_cli, "cluster_backend", key_file_not_on_the_workers)
    code = main(["encrypt", "--key", str(key_file), "--cluster", cluster.address, str(src), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == EXIT_NOT_STARTED
    assert "2 of 2 Dask workers cannot run this job" in err and "cannot load the job's keys" in err
    assert err.count("dicomcrypt: error:") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_over_tls_the_job_carries_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """No key file on the workers is needed: the key travels inside the TLS comms."""
    pki = make_pki(tmp_path / "pki")
    tls_cluster = LoopbackCluster(1, pki)
    try:
        key_file = tmp_path / "site.key"
        key = Key.generate()
        key.save(key_file)
        src = _corpus(tmp_path / "in")
        real_backend = encrypt_cli.cluster_backend

        def key_file_not_on_the_workers(args: object) -> object:
            backend = real_backend(args)  # type: ignore[arg-type]
            key_file.unlink()
            return backend

        monkeypatch.setattr(encrypt_cli, "cluster_backend", key_file_not_on_the_workers)
        code = main(["encrypt", "-q", "--key", str(key_file), "--cluster", tls_cluster.address,
                     "--cluster-tls-ca", str(pki.ca), "--cluster-tls-cert", str(pki.client_cert),
                     "--cluster-tls-key", str(pki.client_key), str(src), str(tmp_path / "out")])
        assert code == 0, capsys.readouterr().err
        assert len(_restored_pixels(key, tmp_path / "out", tmp_path / "restored")) == 4
    finally:
        tls_cluster.stop()


def test_a_key_id_the_workers_key_files_lack_and_an_unwritable_out(
    cluster: LoopbackCluster, site: tuple[Key, Path], tmp_path: Path
):
    _, key_file = site
    src = _corpus(tmp_path / "in")
    other = EncryptJob(EncryptionSettings.build(key=Key.generate()))
    with pytest.raises(ClusterError, match="no key with id"):
        _run(DaskBackend(cluster.address, key_paths=(key_file,)), other, src, tmp_path / "out")
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    key, _ = site
    with pytest.raises(ClusterError, match="cannot write the output folder"):
        _run(DaskBackend(cluster.address, key_paths=(key_file,)), EncryptJob(EncryptionSettings.build(key=key)),
             src, blocker / "out")


def test_plain_tcp_refuses_secrets_without_key_files(tmp_path: Path):
    """Refused before any connection: nothing is sent."""
    key = Key.generate()
    identity = IdentityProtection.load([make_identity(tmp_path / "identity", bits=1024).cert])
    tasks = plan(_corpus(tmp_path / "in"), tmp_path / "out")
    with pytest.raises(InsecureClusterError, match="none were given"):
        next(DaskBackend("tcp://127.0.0.1:9").run(EncryptJob(EncryptionSettings.build(key=key)), tasks))
    recipients_only = EncryptJob(EncryptionSettings.build(recipients=[RecipientKey.generate().recipient]))
    blob, sealed, paths = DaskBackend("tcp://127.0.0.1:9")._pack(recipients_only)  # no secret: no key file
    assert sealed and paths == ()
    blob, sealed, paths = DaskBackend("tcp://127.0.0.1:9", key_paths=(tmp_path / "k.key",))._pack(
        EncryptJob(EncryptionSettings.build(key=key))
    )
    assert sealed and paths == (str(tmp_path / "k.key"),)
    assert key._secret not in blob and key.key_id.encode() in blob  # the id travels, never the secret
    with_identity = EncryptJob(EncryptionSettings.build(key=key, protect_identity=identity))
    with pytest.raises(InsecureClusterError, match="protect-identity"):
        next(DaskBackend("tcp://127.0.0.1:9", key_paths=(tmp_path,)).run(with_identity, tasks))


def test_local_cluster_from_the_command_line(site: tuple[Key, Path], tmp_path: Path):
    _, key_file = site
    src = _corpus(tmp_path / "in")
    started = time.monotonic()
    code = main(["encrypt", "-q", "--key", str(key_file), "--cluster", "local:2", str(src), str(tmp_path / "out")])
    assert code == 0, time.monotonic() - started
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))  # not the manifest
    assert written == sorted(p.name for p in CORPUS)


def test_rerunning_a_cluster_job_resumes_from_its_manifest(
    cluster: LoopbackCluster, site: tuple[Key, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """The client keeps the manifest whatever the backend: a re-run redoes only what is missing."""
    _, key_file = site
    src, out = _corpus(tmp_path / "in"), tmp_path / "out"
    command = ["encrypt", "-q", "--key", str(key_file), "--cluster", cluster.address, str(src), str(out)]
    assert main(command) == 0
    outputs = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir() if not p.name.startswith(".")}
    lost = sorted(outputs)[0]
    (out / lost).unlink()  # as if the first run had stopped before this file
    assert main(command[:1] + ["-v"] + command[2:]) == 0
    log = capsys.readouterr().out
    assert log.count("(already done (job manifest))") == len(outputs) - 1  # one line per skipped file
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir() if not p.name.startswith(".")}
    assert after.keys() == outputs.keys() and f" {lost} [" in log  # the lost one was done again
    assert all(after[name] == stat for name, stat in outputs.items() if name != lost)  # the rest not twice
    assert main(["jobs", "status", str(out)]) == 0


def test_rekey_on_the_cluster_loads_the_new_key_file_on_the_workers(
    cluster: LoopbackCluster, site: tuple[Key, Path], tmp_path: Path
):
    key, key_file = site
    new_file = tmp_path / "new.key"
    new = Key.generate()
    new.save(new_file)
    src = _corpus(tmp_path / "in")
    assert main(["encrypt", "-q", "-j", "1", "--key", str(key_file), str(src), str(tmp_path / "enc")]) == 0
    assert main(["rekey", "-q", "--key", str(key_file), "--to", str(new_file), "--cluster", cluster.address,
                 str(tmp_path / "enc"), str(tmp_path / "rekeyed")]) == 0
    restored = _restored_pixels(new, tmp_path / "rekeyed", tmp_path / "restored")
    assert len(restored) == 4
    for rel, pixels in restored.items():
        np.testing.assert_array_equal(pixels, read_dicom(src / rel).pixel_array)


def test_batches_group_small_files_and_leave_a_large_one_alone():
    from dicomcrypt.runner.dask import batch_tasks
    from dicomcrypt.runner.tasks import Task

    tasks = [Task(f"s{i}", f"r{i}", f"d{i}") for i in range(7)]
    sizes = [10, 10, 10, 500, 10, 10, 10]
    batches = batch_tasks(tasks, sizes, max_bytes=100, max_files=2)
    assert [[t.rel for t in b] for b in batches] == [["r0", "r1"], ["r2"], ["r3"], ["r4", "r5"], ["r6"]]
