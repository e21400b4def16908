"""Instances/s and MB/s on loopback for one set of CT files, our pair beside its peers (issue 14).

Not a test: every figure is measured in this run, on this machine, so the ratios mean
something. The set is N copies (new UIDs) of pydicom-data's 512x512 CT (693_UNCR, 526 KB).
Each run times the sending process from start to exit (it waits for every answer, and every
receiver answers only once the instance is on disk), so process start-up is included for all;
receivers are started (and warmed up) before the clock starts. dicomcrypt's modules are
byte-compiled first, as installing a package does (pydicom and pynetdicom in the venv are):
with ``PYTHONDONTWRITEBYTECODE`` set, every process would otherwise compile them again, ~1-2 s
of each of our rows that the peers' rows do not pay.

Runs, all to a receiver on 127.0.0.1 writing to a fresh folder (the issue's table, then ours):

1. DCMTK storescu -> DCMTK storescp, plain files (TCP_NODELAY=1: DCMTK 3.6.7 stalls otherwise)
2. pynetdicom storescu -> pynetdicom storescp (``python -m pynetdicom``, default settings), plain
3. dicomcrypt send --plain -> DCMTK storescp: our SCU's own network cost, no encryption
4. dicomcrypt send (already-encrypted files) -> dicomcrypt serve --store encrypted: our pair,
   no codec (the receiver still authenticates each envelope), over 1 and over 2 associations
5. dicomcrypt send (standard mode: JPEG-LS + AES-GCM, no autoencoder) -> serve (restores), 1 and 2
   associations: the pipeline with a fast codec
6. dicomcrypt send (lossless, encrypted on the fly) -> dicomcrypt serve (restores): the real job,
   1 and 2 associations (what parallel associations buy)

Every row is accounted for: the count of files filed and a digest of their pixels (per SOP
Instance UID; the envelope for row 4) must equal the sent set's, else the run fails.

Then where the time goes, two ways, for the lossless and the standard row:

- under load: the row again with the sender in this process and ``serve --log-level info``; per
  instance, the sender's seal time (read, codec, AES-GCM, DICOM encode, spool write, in a worker),
  its C-STORE time (request to answer: wire, queueing, restore, fsync), and the receiver's own
  handling time (decide, restore, file; from its log);
- alone: one instance at a time in this process, stage by stage (read, codec encode, seal, DICOM
  encode; open, codec decode, write + fsync).

    .venv/bin/python benchmarks/bench_network.py [--copies 100] [--json FILE]
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import io
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

import dicomcrypt
from dicomcrypt.crypto import Key, KeyRing
from dicomcrypt.dicom import read_private_block
from dicomcrypt.files import write_dicom_atomic
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance

DATA = Path(__import__("data_store").__file__).parent / "data"
CT = DATA / "693_UNCR.dcm"
PY = sys.executable
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
_LOGGED_SECONDS = re.compile(r"event=store .*outcome=restored .*seconds=([0-9.]+)")


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    instances: int
    megabytes: float  # of plain input files
    digest: str  # of the filed instances' pixels, equal to the sent set's
    startup: float = 0.0
    """Its sender's start-up (interpreter and imports, measured apart; DCMTK's counted as 0)."""

    @property
    def rate(self) -> float:
        return self.instances / self.seconds

    @property
    def rate_after_startup(self) -> float:
        """Instances per second of the time left once the sender has started."""
        return self.instances / max(self.seconds - self.startup, 1e-3)

    def line(self, pynetdicom: Run, dcmtk: Run) -> str:
        return (f"{self.name:<68} {self.seconds:7.1f} s {self.rate:7.1f} inst/s {self.megabytes / self.seconds:6.1f} "
                f"MB/s {self.rate / pynetdicom.rate:7.2f}x {self.rate / dcmtk.rate:7.2f}x "
                f"{self.rate_after_startup / pynetdicom.rate_after_startup:9.2f}x")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 120.0) -> None:
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


def pixel_digest(paths: list[Path]) -> str:
    """SHA-256 over (SOP Instance UID, digest of its pixels) sorted by UID: equal for two sets
    holding the same instances with the same pixel values, whatever their encoding. An
    encrypted instance's "pixels" are its envelope (its Pixel Data is a placeholder)."""
    items = []
    for path in paths:
        ds = pydicom.dcmread(path)
        info = read_private_block(ds)
        pixels = bytes(info.envelope) if info is not None else ds.pixel_array.tobytes()
        items.append(f"{ds.SOPInstanceUID}:{hashlib.sha256(pixels).hexdigest()}")
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()


class Server:
    """A receiver process, stderr to a file (read after it stopped), stopped by SIGTERM."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=sink)
        wait_for_port(port)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log.read_text(errors="replace")


def filed(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and "quarantine" not in p.parts
                  and not p.name.startswith("."))


def timed_run(name: str, server: list[str], client: list[str], *, port: int, out: Path, files: list[Path],
              expected_digest: str, env: dict[str, str] | None = None, startup: float = 0.0) -> Run:
    """Start ``server``, time ``client`` to completion, stop the server, check every instance
    arrived with its pixels (count and digest)."""
    out.mkdir(parents=True)
    srv = Server(server, port, out.parent / f"{out.name}.log", env)
    try:
        started = time.perf_counter()
        done = subprocess.run(client, env=env, capture_output=True, text=True, timeout=3600, check=False)
        seconds = time.perf_counter() - started
    finally:
        log = srv.stop()
    stored = filed(out)
    if done.returncode != 0 or len(stored) != len(files):
        raise RuntimeError(f"{name}: exit {done.returncode}, {len(stored)}/{len(files)} stored\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}{log[-2000:]}")
    digest = pixel_digest(stored)
    if digest != expected_digest:
        raise RuntimeError(f"{name}: the filed pixels differ from the sent ones")
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    print(f"  {name}: {seconds:.1f} s, {len(stored)}/{len(files)} filed, pixels match", flush=True)
    return Run(name, seconds, len(files), megabytes, digest, startup)


def profile_under_load(key_file: Path, plain: Path, out: Path, files: list[Path],
                       mode: str = "lossless") -> dict[str, dict[str, float]]:
    """An on-the-fly row again (``mode``) with the sender in this process: per-instance
    medians/p90 of each side's times."""
    from dicomcrypt.net.address import parse_peer
    from dicomcrypt.net.scu import send
    from dicomcrypt.settings import EncryptionSettings

    out.mkdir(parents=True)
    port = free_port()
    srv = Server([PY, "-m", "dicomcrypt", "serve", "--host", "127.0.0.1", "--port", str(port), "--key",
                  str(key_file), "--out", str(out), "--log-level", "info"], port, out.parent / "profile.log")
    try:
        settings = EncryptionSettings.build(key=Key.load(key_file), mode=mode)
        started = time.perf_counter()
        report = send([plain], parse_peer(f"RECEIVER@127.0.0.1:{port}"), calling_aet="BENCH", settings=settings,
                      workers=len(os.sched_getaffinity(0)))
        wall = time.perf_counter() - started
    finally:
        log = srv.stop()
    if not report.all_arrived or len(filed(out)) != len(files):
        raise RuntimeError(f"profile run: {len(filed(out))}/{len(files)} filed\n{report.summary()}")
    receiver = [float(m.group(1)) for m in _LOGGED_SECONDS.finditer(log)]

    def spread(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        return {"median_ms": 1000 * statistics.median(values), "p90_ms": 1000 * values[int(0.9 * (len(values) - 1))]}

    sent = [r.send_seconds for r in report.results]
    return {
        "sender: seal in a worker (read, codec, AES-GCM, DICOM encode, spool)": spread(
            [r.seal_seconds for r in report.results]),
        "sender: C-STORE request to answer (wire, queue, restore, fsync)": spread(sent),
        "receiver: handle in a restore worker (decide, decode, restore, write, fsync)": spread(receiver),
        "wire + receiver queueing (C-STORE minus handling, median)": {
            "median_ms": 1000 * (statistics.median(sent) - statistics.median(receiver)), "p90_ms": float("nan")},
        "wall clock per instance (whole send / instances)": {
            "median_ms": 1000 * wall / len(files), "p90_ms": float("nan")},
    }


def breakdown(key: Key, out: Path, samples: int = 5, mode: str = "lossless") -> dict[str, float]:
    """Median seconds per stage for one instance alone, sender then receiver (``mode``)."""
    stages: dict[str, list[float]] = {}

    def add(stage: str, seconds: float) -> None:
        stages.setdefault(stage, []).append(seconds)

    for i in range(samples + 1):  # the first is a warm-up (model load)
        started = time.perf_counter()
        ds = pydicom.dcmread(CT)
        read_s = time.perf_counter() - started
        outcome = encrypt_instance(ds, key=key, mode=mode)
        started = time.perf_counter()
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, outcome.dataset, enforce_file_format=True)
        encode_dicom_s = time.perf_counter() - started
        received = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
        restored = decrypt_instance(received, keys=KeyRing([key]))
        started = time.perf_counter()
        write_dicom_atomic(restored.dataset, out / f"{mode}-restored{i}.dcm", force=True)
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


def startup_seconds(argv: list[str], repeat: int = 3) -> float:
    """Median wall time of ``argv`` (a ``--help``): process start-up and imports, paid by every row's sender."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def serve_argv(port: int, key_file: Path, out: Path, *extra: str) -> list[str]:
    return [PY, "-m", "dicomcrypt", "serve", "--host", "127.0.0.1", "--port", str(port), "--key", str(key_file),
            "--out", str(out), "--log-level", "warning", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    parser.add_argument("--no-profile", action="store_true", help="skip the two time breakdowns")
    args = parser.parse_args()
    compileall.compile_dir(Path(dicomcrypt.__file__).parent, quiet=1)

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
        plain_digest = pixel_digest(files)
        encrypted_digest = pixel_digest(sorted(encrypted.iterdir()))
        cpus = len(os.sched_getaffinity(0))
        print(f"{args.copies} x {CT.name} ({files[0].stat().st_size / 1e3:.0f} kB, 512x512 CT), loopback, "
              f"{cpus} CPUs, load average {os.getloadavg()[0]:.1f}; time = sending process start to exit", flush=True)
        startup = {"our send": startup_seconds([PY, "-m", "dicomcrypt", "send", "--help"]),
                   "pynetdicom storescu": startup_seconds([PY, "-m", "pynetdicom", "storescu", "--help"])}
        print("sender start-up (--help: interpreter and imports, median of 3): " +
              ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in startup.items()), flush=True)
        ours = startup["our send"]
        runs: list[Run] = []
        send = [PY, "-m", "dicomcrypt", "send", "-q"]

        port = free_port()
        runs.append(timed_run(
            "DCMTK storescu -> DCMTK storescp (plain)",
            ["storescp", "--output-directory", str(tmp / "r1"), str(port)],
            ["storescu", "-aec", "STORESCP", "127.0.0.1", str(port), *map(str, files)],
            port=port, out=tmp / "r1", files=files, expected_digest=plain_digest, env=DCMTK_ENV))
        port = free_port()
        runs.append(timed_run(
            "pynetdicom storescu -> pynetdicom storescp (plain)",
            [PY, "-m", "pynetdicom", "storescp", "-od", str(tmp / "r2"), str(port)],
            [PY, "-m", "pynetdicom", "storescu", "-cx", "127.0.0.1", str(port), str(tmp / "plain")],
            port=port, out=tmp / "r2", files=files, expected_digest=plain_digest,
            startup=startup["pynetdicom storescu"]))
        port = free_port()
        runs.append(timed_run(
            "our send --plain -> DCMTK storescp",
            ["storescp", "--output-directory", str(tmp / "r3"), str(port)],
            [*send, "--plain", f"STORESCP@127.0.0.1:{port}", str(tmp / "plain")],
            port=port, out=tmp / "r3", files=files, expected_digest=plain_digest, env=DCMTK_ENV, startup=ours))
        port = free_port()
        for n, associations in ((4, 1), (41, 2)):
            port = free_port()
            runs.append(timed_run(
                f"our send (pre-encrypted, {associations} assoc.) -> serve --store encrypted",
                serve_argv(port, key_file, tmp / f"r{n}", "--store", "encrypted"),
                [*send, "--associations", str(associations), f"RECEIVER@127.0.0.1:{port}", str(encrypted)],
                port=port, out=tmp / f"r{n}", files=files, expected_digest=encrypted_digest, startup=ours))
        on_the_fly = [("standard", 1), ("standard", 2), ("lossless", 1), ("lossless", 2)]
        for n, (mode, associations) in enumerate(on_the_fly, start=5):
            port = free_port()
            chosen = ["--associations", str(associations)]
            how = f"{associations} assoc."
            runs.append(timed_run(
                f"our send ({mode} on the fly, {how}) -> serve (restores)",
                serve_argv(port, key_file, tmp / f"r{n}"),
                [*send, "--key", str(key_file), "--mode", mode, *chosen, f"RECEIVER@127.0.0.1:{port}",
                 str(tmp / "plain")],
                port=port, out=tmp / f"r{n}", files=files, expected_digest=plain_digest, startup=ours))

        dcmtk, pynetdicom = runs[0], runs[1]
        print(f"\n{'run':<68} {'time':>9} {'rate':>14} {'plain':>11} {'vs pynetdicom':>8} {'vs DCMTK':>8} "
              f"{'vs pynetdicom after start-up':>9}")
        for run in runs:
            print(run.line(pynetdicom, dcmtk))
        result: dict[str, object] = {
            "copies": args.copies, "cpus": cpus, "load_average": os.getloadavg()[0],
            "rows": [{**asdict(run), "inst_per_s": run.rate, "vs_pynetdicom": run.rate / pynetdicom.rate,
                      "vs_dcmtk": run.rate / dcmtk.rate,
                      "vs_pynetdicom_after_startup": run.rate_after_startup / pynetdicom.rate_after_startup}
                     for run in runs],
            "startup_ms": {name: 1000 * seconds for name, seconds in startup.items()},
        }

        if not args.no_profile:
            (tmp / "breakdown").mkdir()
            for mode, suffix in (("lossless", ""), ("standard", "_standard")):
                print(f"\nunder load ({mode} on the fly, 1 assoc., again; sender in this process; per instance):")
                profile = profile_under_load(key_file, tmp / "plain", tmp / f"profile-{mode}", files, mode)
                for stage, figures in profile.items():
                    p90 = f"  p90 {figures['p90_ms']:7.1f} ms" if figures["p90_ms"] == figures["p90_ms"] else ""
                    print(f"  {stage:<78} {figures['median_ms']:7.1f} ms{p90}")
                print(f"\none {mode} instance alone, stage by stage (median of 5, this process):")
                stages = breakdown(key, tmp / "breakdown", mode=mode)
                envelope_kb = stages.pop("envelope kB")
                total = sum(stages.values())
                for stage, seconds in stages.items():
                    print(f"  {stage:<46} {seconds * 1000:8.1f} ms  {100 * seconds / total:5.1f} %")
                print(f"  envelope {envelope_kb:.0f} kB per instance against "
                      f"{files[0].stat().st_size / 1e3:.0f} kB plain")
                result[f"under_load{suffix}"] = profile
                result[f"alone_ms{suffix}"] = {stage: 1000 * seconds for stage, seconds in stages.items()}
                result[f"envelope_kb{suffix}"] = envelope_kb
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
            print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
