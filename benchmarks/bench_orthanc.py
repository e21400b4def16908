"""What the dicomcrypt plugin costs Orthanc per instance.

Not a test: starts real Orthancs on loopback (helpers.orthanc, as the tests do) and sends the
same instances with DCMTK storescu (TCP_NODELAY=1, one association per batch) to

- a plain Orthanc (no plugin): the peer every other figure is divided by;
- Orthanc with the plugin in restore mode, receiving encrypted instances (standard, lossless);
- Orthanc with the plugin in encrypt mode, receiving plain instances (standard, lossless);

all five running at once; K batches of N instances (each batch one association, as one send of N
was before batches), round robin over the five, so a load that comes and goes (a shared machine)
hits every case alike. It prints the wall time per instance
of each case's fastest batch (and the median batch), its ratio to the plain Orthanc of the same
image in the same run, the time the plugin adds over plain Orthanc's (as a multiple of it), and
the hook's own mean time per instance from GET /dicomcrypt/status (all batches). Startup (model
load + warm-up) is timed apart. Every instance sent must be stored (counted at the end).
Two images by default: CT_small (128x128, where per-instance fixed costs dominate) and 693_UNCR
(512x512 CT, the image of bench_network), each as N copies under new UIDs.

The issue-14 target, "restore and encrypt on ingest add no more than 2x plain Orthanc's
per-instance time" (standard and lossless): read strictly, the "x plain Orthanc" column at most
2; read literally, the "added / plain" column (x plain - 1) at most 2. Both are printed.
``--json FILE`` writes every figure for comparing runs. ``--hook-only REPEAT`` starts no Orthanc:
it times the hook in this process with the splice on and off in turn (load-proof before/after).

    .venv/bin/python benchmarks/bench_orthanc.py [--count 40] [--batches 3] [--image NAME ...] [--json FILE]
    .venv/bin/python benchmarks/bench_orthanc.py --hook-only 30 [--image NAME ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dicomcrypt import Key, encrypt_dataset  # noqa: E402
from helpers.corpus import fresh_copy  # noqa: E402
from helpers.orthanc import OrthancServer, start_orthanc  # noqa: E402

DEFAULT_IMAGES = ("CT_small.dcm", "693_UNCR.dcm")  # 128x128 (fixed costs dominate) and 512x512 CT


def write_instances(folder: Path, image: str, count: int, key: Key | None, mode: str, *,
                    effort: str | None = None) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for index in range(count):
        ds = fresh_copy(image)
        if key is not None:
            ds = encrypt_dataset(ds, key=key, mode=mode, effort=effort)
        paths.append(folder / f"{index}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def send(server: OrthancServer, paths: list[Path]) -> float:
    """Seconds for DCMTK storescu to send ``paths`` on one association (all answered Success)."""
    started = time.perf_counter()
    done = server.store_scu(paths, timeout=3600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"send failed:\n{done.stdout}{done.stderr}\n{server.log_tail()}")
    return elapsed


def run_cases(root: Path, tag: str, cases: list[Case], batches: int) -> list[dict]:
    """Start one Orthanc per case, then send batch after batch to each in turn, round robin, so
    every case meets the same load; a case's figure is its fastest batch (and the median).
    Every instance must be stored: the counts are checked at the end."""
    servers: list[OrthancServer] = []
    startups: list[float] = []
    try:
        for index, (_, settings, _) in enumerate(cases):
            started = time.perf_counter()
            servers.append(start_orthanc(root / f"{tag}-case{index}", dicomcrypt=settings))
            startups.append(time.perf_counter() - started)
        times: list[list[float]] = [[] for _ in cases]
        for batch in range(batches):
            for index, (_, _, paths) in enumerate(cases):
                chunk = paths[batch::batches]  # the same number of instances per association, every case
                times[index].append(send(servers[index], chunk) / len(chunk))
        results = []
        for index, (label, settings, paths) in enumerate(cases):
            stored = len(servers[index].instance_ids())
            if stored != len(paths):
                raise SystemExit(f"{label}: {stored} of {len(paths)} instances stored")
            hook = servers[index].get_json("/dicomcrypt/status")["counts"]["mean_seconds"] if settings else None
            results.append({"case": label, "startup_s": startups[index], "batches_ms": [t * 1000 for t in times[index]],
                            "per_instance_ms": min(times[index]) * 1000,
                            "median_ms": statistics.median(times[index]) * 1000,
                            "hook_mean_ms": hook * 1000 if hook is not None else None})
        return results
    finally:
        for server in servers:
            server.stop()


Case = tuple[str, dict | None, list[Path]]


def cases_for(root: Path, image: str, count: int, key: Key, key_file: Path) -> list[Case]:
    """Plain Orthanc first (the baseline of the ratios), then the plugin's four cases (its encrypt at the
    hook's effort, ``fast``; lossless instances sealed as ``send`` seals them, ``balanced``), then the
    lossless ones at the other effort: restoring instances sealed ``fast``, encrypting ``balanced``."""
    tag = Path(image).stem
    plain = write_instances(root / f"{tag}-plain", image, count, None, "")
    cases: list[Case] = [("plain Orthanc, plain instances", None, plain)]
    for mode in ("standard", "lossless"):
        sealed = write_instances(root / f"{tag}-sealed-{mode}", image, count, key, mode)
        cases.append((f"restore plugin, {mode} instances", {"Mode": "restore", "KeyFiles": [str(key_file)]}, sealed))
    for mode in ("standard", "lossless"):
        cases.append((f"encrypt plugin ({mode}), plain instances",
                      {"Mode": "encrypt", "KeyFiles": [str(key_file)], "EncryptMode": mode}, plain))
    fast = write_instances(root / f"{tag}-sealed-lossless-fast", image, count, key, "lossless", effort="fast")
    cases.append(("restore plugin, lossless instances (effort fast)", {"Mode": "restore", "KeyFiles": [str(key_file)]},
                  fast))
    cases.append(("encrypt plugin (lossless, EncryptEffort balanced), plain instances",
                  {"Mode": "encrypt", "KeyFiles": [str(key_file)], "EncryptMode": "lossless",
                   "EncryptEffort": "balanced"}, plain))
    return cases


def hook_only(images: list[str], repeat: int) -> list[dict]:
    """The hook alone, in this process: splice on and off called in turn on the same bytes, so both
    meet the same load; milliseconds per instance, fastest and median of ``repeat`` calls each."""
    from dicomcrypt.files import dicom_to_bytes
    from dicomcrypt.integrations.hooks import StorageHook

    key = Key.generate()
    rows = []
    print("\n| image | case | splice: fastest / median | whole data set: fastest / median | speed-up (fastest) |")
    print("| --- | --- | --- | --- | --- |")
    for image in images:
        plain = dicom_to_bytes(fresh_copy(image))
        for mode in ("standard", "lossless"):
            sealed = dicom_to_bytes(encrypt_dataset(fresh_copy(image), key=key, mode=mode))
            for label, hook_args, data in (
                (f"restore, {mode} instance", {"mode": "restore"}, sealed),
                (f"encrypt ({mode}), plain instance", {"mode": "encrypt", "encrypt_mode": mode}, plain),
            ):
                hooks = {splice: StorageHook(**hook_args, keys=key, splice=splice) for splice in (True, False)}
                times: dict[bool, list[float]] = {True: [], False: []}
                for _ in range(repeat):
                    for splice, hook in hooks.items():
                        started = time.perf_counter()
                        hook.process(data)
                        times[splice].append((time.perf_counter() - started) * 1000)
                fast, whole = (sorted(times[s]) for s in (True, False))
                row = {"image": image, "case": label, "splice_ms": fast[0], "splice_median_ms": statistics.median(fast),
                       "whole_ms": whole[0], "whole_median_ms": statistics.median(whole)}
                rows.append(row)
                print(f"| {image} | {label} | {fast[0]:.1f} / {statistics.median(fast):.1f} ms | "
                      f"{whole[0]:.1f} / {statistics.median(whole):.1f} ms | {whole[0] / fast[0]:.1f}x |", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40, help="instances per batch (one association; default 40)")
    parser.add_argument("--batches", type=int, default=3, help="batches per case, sent round robin (default 3)")
    parser.add_argument("--image", action="append",
                        help=f"a pydicom test file name, repeatable (default: {' and '.join(DEFAULT_IMAGES)})")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    parser.add_argument("--hook-only", type=int, metavar="REPEAT",
                        help="no Orthanc: time the hook in this process, splice on and off in turn, REPEAT calls each")
    args = parser.parse_args()
    images = args.image or list(DEFAULT_IMAGES)
    batches = max(1, args.batches)
    if args.hook_only:
        load = os.getloadavg()[0]
        hook_rows = hook_only(images, args.hook_only)
        print(f"\nload average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        if args.json:
            Path(args.json).write_text(json.dumps({"hook_only": args.hook_only, "images": images,
                                                   "load_average": load, "rows": hook_rows}, indent=2) + "\n")
        return

    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key = Key.generate()
        key_file = root / "site.key"
        key.save(key_file)
        for image in images:
            cases = cases_for(root, image, args.count * batches, key, key_file)
            print(f"\n{batches} batches of {args.count} x {image} per case, DCMTK storescu -> Orthanc, one association "
                  f"per batch, load average {os.getloadavg()[0]:.1f}\n")
            print("| case | startup | per instance (fastest batch) | median batch | x plain Orthanc | added / plain "
                  "| hook mean per instance |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            results = run_cases(root, Path(image).stem, cases, batches)
            baseline = results[0]["per_instance_ms"]
            for row in results:
                ratio = row["per_instance_ms"] / baseline
                row.update(image=image, vs_plain_orthanc=ratio, added_vs_plain=ratio - 1)
                rows.append(row)
                hook_text = f"{row['hook_mean_ms']:.1f} ms" if row["hook_mean_ms"] is not None else "-"
                print(f"| {row['case']} | {row['startup_s']:.1f} s | {row['per_instance_ms']:.1f} ms | "
                      f"{row['median_ms']:.1f} ms | {ratio:.2f} | {ratio - 1:.2f} | {hook_text} |", flush=True)
    load_after = os.getloadavg()[0]
    print(f"\nload average {load_before:.1f} at the start, {load_after:.1f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "count_per_batch": args.count, "batches": batches, "images": images, "load_average": load_before,
            "load_average_end": load_after, "rows": rows,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
