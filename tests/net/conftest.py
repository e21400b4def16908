"""Shared fixtures for the network tests (``serve`` and ``send``): loopback only, free ports only.

- :func:`free_port`: a port the OS says is free right now, for third-party peers that need a
  number on their command line (our own Receiver binds port 0 instead).
- ``pki``: a throw-away CA, server pair, trusted client pair and untrusted client pair.
- ``site_key`` / ``site_key_file``: one site key, in memory and as a key file.
- ``start_receiver``: starts our :class:`~dicomcrypt.net.scp.Receiver` in-process on port 0 and
  stops it in teardown: ``rx = start_receiver(out=tmp_path / "in", keys=KeyRing([key]))``.
- ``encrypted_files``: a few small instances (CT, MR; ``standard`` mode, so no codec cost)
  encrypted with ``site_key`` and written as files, with the plain originals beside them.
- ``helpers.store_clients``: ``dcmtk_env()`` (``TCP_NODELAY=1``: DCMTK 3.6.7 stalls on Nagle +
  delayed ACK otherwise), ``storescu(...)``, and a bare pynetdicom ``store(...)``.
- :func:`wait_for_port` / :class:`BackgroundProcess`: start a third-party server (storescp,
  Orthanc) with a timeout and kill it by PID in teardown.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.corpus import read_quietly, sample
from helpers.store_clients import dcmtk_env  # noqa: F401  (re-exported: tests import it from here)
from helpers.tls import TLSFiles, make_pki


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on ``port``, or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on {host}:{port} after {timeout} s")


class BackgroundProcess:
    """A server process started for one test and killed by its PID afterwards."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        """What the process printed (only after :meth:`stop`)."""
        out = self.proc.stdout.read() if self.proc.stdout else b""
        return out.decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)


@pytest.fixture
def background() -> Iterator[Callable[..., BackgroundProcess]]:
    """Factory: ``background([...argv], env=...)``; every process is stopped in teardown."""
    started: list[BackgroundProcess] = []

    def start(argv: Sequence[str], **kwargs) -> BackgroundProcess:
        process = BackgroundProcess(argv, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def site_key():
    from dicomcrypt import Key

    return Key.generate()


@pytest.fixture(scope="session")
def site_key_file(site_key, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "site.key"
    site_key.save(path)
    return path


@pytest.fixture
def start_receiver(tmp_path: Path, site_key) -> Iterator[Callable[..., object]]:
    """Factory for in-process receivers on a free port; all are stopped in teardown.

    Defaults: AE title ``RECEIVER`` on 127.0.0.1, key ring of ``site_key``, ``out`` =
    ``tmp_path / "received"``, restoring in the association's thread. Any :class:`ReceiverConfig`
    field can be overridden.
    """
    from dicomcrypt import KeyRing
    from dicomcrypt.net.scp import Receiver, ReceiverConfig

    started: list[Receiver] = []

    def start(**overrides) -> Receiver:
        settings = {
            "ae_title": "RECEIVER",
            "host": "127.0.0.1",
            "port": 0,
            "keys": KeyRing([site_key]),
            "out": tmp_path / "received",
            # in the association's thread: a pool spawns processes per receiver, too slow for every
            # test; the pool has its own tests (test_restore_pool.py) and `serve` uses it by default
            "restore_workers": 0,
        }
        settings.update(overrides)
        receiver = Receiver(ReceiverConfig(**settings))
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


SMALL_IMAGES = ("CT_small.dcm", "MR_small.dcm")
"""Small real images from pydicom's test files (128x128 CT, 64x64 MR), little endian."""


@dataclass(frozen=True)
class EncryptedFiles:
    """Plain originals and their encrypted copies, paired by index."""

    plain: tuple[Path, ...]
    encrypted: tuple[Path, ...]


@pytest.fixture
def encrypted_files(tmp_path: Path, site_key) -> EncryptedFiles:
    """The :data:`SMALL_IMAGES`, each encrypted with ``site_key`` in ``standard`` mode."""
    from dicomcrypt import encrypt_dataset
    from dicomcrypt.files import write_dicom_atomic

    plain, encrypted = [], []
    for name in SMALL_IMAGES:
        source = sample(name)
        ds = read_quietly(source)
        target = tmp_path / "encrypted" / name
        write_dicom_atomic(encrypt_dataset(ds, key=site_key, mode="standard"), target)
        plain.append(source)
        encrypted.append(target)
    return EncryptedFiles(tuple(plain), tuple(encrypted))


def encrypted_copies(key, count: int, name: str = "CT_small.dcm") -> list:
    """``count`` copies of pydicom's ``name``, each under a new SOP Instance UID, encrypted with
    ``key`` in ``standard`` mode: distinct instances of one real image for transfer tests."""
    import copy

    from pydicom.uid import generate_uid

    from dicomcrypt import encrypt_dataset

    base = read_quietly(sample(name))
    copies = []
    for _ in range(count):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = generate_uid()
        copies.append(encrypt_dataset(ds, key=key, mode="standard"))
    return copies
