"""Instances/s and MB/s on loopback for one set of CT files, our pair beside its peers.

Not a test: every figure is measured in this run, on this machine, so the ratios mean
something. The set is N copies (new UIDs) of pydicom-data's 512x512 CT (693_UNCR, 526 KB).
Each run times the sending process from start to exit (it waits for every answer, and every
receiver answers only once the instance is on disk), so process start-up is included for all.

Runs, all to a receiver on 127.0.0.1 writing to a fresh folder:

1. DCMTK storescu -> DCMTK storescp, plain files (TCP_NODELAY=1: DCMTK 3.6.7 stalls otherwise)
2. pynetdicom storescu -> pynetdicom storescp (``python -m pynetdicom``), plain files
3. dicomcrypt send --plain -> DCMTK storescp: our SCU's own network cost, no encryption
4. dicomcrypt send (already-encrypted files) -> dicomcrypt serve --store encrypted: our pair,
   no codec (the receiver still authenticates each envelope)
5. dicomcrypt send (standard mode: JPEG-LS + AES-GCM, no autoencoder) -> serve (restores)
6. dicomcrypt send (lossless, encrypted on the fly) -> dicomcrypt serve (restores): the real job
7. the same with --associations 2, so the receiver restores two instances at once

Then, in this process, where the time of run 6 goes per instance: read, codec encode (latent
+ residual), AES-GCM seal, DICOM encode; on the receiver AES-GCM open, codec decode, DICOM
write to disk.

    .venv/bin/python benchmarks/bench_network.py [--copies 50]
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from dicomcrypt.crypto import Key, KeyRing
from dicomcrypt.files import write_dicom_atomic
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance

DATA = Path(__import__("data_store").__file__).parent / "data"
CT = DATA / "693_UNCR.dcm"
PY = sys.executable
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    instances: int
    megabytes: float  # of plain input files

    def line(self, reference: Run | None) -> str:
        rate = self.instances / self.seconds
        ratio = f"{rate / (reference.instances / reference.seconds):6.2f}x" if reference else "      -"
        throughput = self.megabytes / self.seconds
        return f"{self.name:<62} {self.seconds:7.1f} s {rate:8.1f} inst/s {throughput:7.1f} MB/s  {ratio}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def make_copies(folder: Path, n: int) -> list[Path]:
    source = pydicom.dcmread(CT)
    paths = []
    for i in range(n):
        ds = source.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"ct{i:03d}.dcm"
        write_dicom_atomic(ds, path)
        paths.append(path)
    return paths


def timed_run(name: str, server: list[str], client: list[str], *, port: int, out: Path, files: list[Path],
              env: dict[str, str] | None = None) -> Run:
    """Start ``server``, time ``client`` to completion, stop the server, check every file arrived."""
    out.mkdir(parents=True)
    proc = subprocess.Popen(server, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        started = time.perf_counter()
        done = subprocess.run(client, env=env, capture_output=True, text=True, timeout=1800, check=False)
        seconds = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    stored = [p for p in out.rglob("*") if p.is_file() and "quarantine" not in p.parts]
    if done.returncode != 0 or len(stored) != len(files):
        raise RuntimeError(f"{name}: exit {done.returncode}, {len(stored)}/{len(files)} stored\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    return Run(name, seconds, len(files), megabytes)


def breakdown(key: Key, out: Path, samples: int = 5) -> dict[str, float]:
    """Median seconds per stage for one instance, sender then receiver (lossless)."""
    stages: dict[str, list[float]] = {}

    def add(stage: str, seconds: float) -> None:
        stages.setdefault(stage, []).append(seconds)

    for i in range(samples + 1):  # the first is a warm-up (model load)
        started = time.perf_counter()
        ds = pydicom.dcmread(CT)
        read_s = time.perf_counter() - started
        outcome = encrypt_instance(ds, key=key, mode="lossless")
        started = time.perf_counter()
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, outcome.dataset, enforce_file_format=True)
        encode_dicom_s = time.perf_counter() - started
        received = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
        restored = decrypt_instance(received, keys=KeyRing([key]))
        started = time.perf_counter()
        write_dicom_atomic(restored.dataset, out / f"restored{i}.dcm", force=True)
        write_s = time.perf_counter() - started
        if i == 0:
            continue
        m, r = outcome.metrics, restored.metrics
        add("sender: read file", read_s)
        add("sender: codec encode (latent + residual)", m["encode_s"])
        add("sender: AES-256-GCM seal", m["encrypt_s"])
        add("sender: DICOM encode", encode_dicom_s)
        add("receiver: AES-256-GCM open", r["decrypt_s"])
        add("receiver: codec decode (+ residual, digest)", r["decode_s"])
        add("receiver: DICOM write + fsync", write_s)
        add("envelope kB", m["envelope_bytes"] / 1e3)
    return {stage: statistics.median(values) for stage, values in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp_text:
        tmp = Path(tmp_text)
        files = make_copies(tmp / "plain", args.copies)
        key = Key.generate()
        key_file = tmp / "site.key"
        key.save(key_file)
        encrypted = tmp / "encrypted"
        for path in files:  # for run 4; in this process, not timed
            write_dicom_atomic(encrypt_instance(pydicom.dcmread(path), key=key, mode="lossless").dataset,
                               encrypted / path.name)
        print(f"{args.copies} x {CT.name} ({files[0].stat().st_size / 1e3:.0f} kB, 512x512 CT), loopback, "
              f"{os.cpu_count()} CPUs; time = sending process start to exit")
        runs: list[Run] = []

        port = free_port()
        runs.append(timed_run(
            "DCMTK storescu -> DCMTK storescp (plain)",
            ["storescp", "--output-directory", str(tmp / "r1"), str(port)],
            ["storescu", "-aec", "STORESCP", "127.0.0.1", str(port), *map(str, files)],
            port=port, out=tmp / "r1", files=files, env=DCMTK_ENV))
        port = free_port()
        runs.append(timed_run(
            "pynetdicom storescu -> pynetdicom storescp (plain)",
            [PY, "-m", "pynetdicom", "storescp", "-od", str(tmp / "r2"), str(port)],
            [PY, "-m", "pynetdicom", "storescu", "-cx", "127.0.0.1", str(port), str(tmp / "plain")],
            port=port, out=tmp / "r2", files=files))
        port = free_port()
        runs.append(timed_run(
            "dicomcrypt send --plain -> DCMTK storescp",
            ["storescp", "--output-directory", str(tmp / "r3"), str(port)],
            [PY, "-m", "dicomcrypt", "send", "--plain", "-q", f"STORESCP@127.0.0.1:{port}", str(tmp / "plain")],
            port=port, out=tmp / "r3", files=files, env=DCMTK_ENV))
        port = free_port()
        runs.append(timed_run(
            "dicomcrypt send (pre-encrypted) -> serve --store encrypted",
            [PY, "-m", "dicomcrypt", "serve", "--host", "127.0.0.1", "--port", str(port), "--key", str(key_file),
             "--store", "encrypted", "--out", str(tmp / "r4"), "--log-level", "warning"],
            [PY, "-m", "dicomcrypt", "send", "-q", f"RECEIVER@127.0.0.1:{port}", str(encrypted)],
            port=port, out=tmp / "r4", files=files))
        for n, (mode, associations) in enumerate([("standard", 1), ("lossless", 1), ("lossless", 2)], start=5):
            port = free_port()
            runs.append(timed_run(
                f"dicomcrypt send ({mode} on the fly, {associations} assoc.) -> serve (restores)",
                [PY, "-m", "dicomcrypt", "serve", "--host", "127.0.0.1", "--port", str(port), "--key", str(key_file),
                 "--out", str(tmp / f"r{n}"), "--log-level", "warning"],
                [PY, "-m", "dicomcrypt", "send", "--key", str(key_file), "--mode", mode, "-q",
                 "--associations", str(associations), f"RECEIVER@127.0.0.1:{port}", str(tmp / "plain")],
                port=port, out=tmp / f"r{n}", files=files))

        sys.stdout.flush()
        print(f"\n{'run':<62} {'time':>9} {'rate':>15} {'plain MB/s':>12}  vs DCMTK")
        for run in runs:
            print(run.line(runs[0] if run is not runs[0] else None))

        print("\nwhere one lossless instance's time goes (median of 5, this process, 1 instance at a time):")
        stages = breakdown(key, tmp / "breakdown")
        envelope_kb = stages.pop("envelope kB")
        total = sum(stages.values())
        for stage, seconds in stages.items():
            print(f"  {stage:<46} {seconds * 1000:8.1f} ms  {100 * seconds / total:5.1f} %")
        network = runs[3].seconds / runs[3].instances
        print(f"  {'network + receiver filing (from run 4)':<46} {network * 1000:8.1f} ms per instance")
        print(f"  envelope {envelope_kb:.0f} kB per instance against {files[0].stat().st_size / 1e3:.0f} kB plain")


if __name__ == "__main__":
    main()
