"""What the dicomcrypt plugin costs Orthanc per instance.

Not a test: starts real Orthancs on loopback (helpers.orthanc, as the tests do) and sends the
same N instances with DCMTK storescu (TCP_NODELAY=1, one association) to

- a plain Orthanc (no plugin): the peer every other figure is divided by;
- Orthanc with the plugin in restore mode, receiving encrypted instances (standard, lossless);
- Orthanc with the plugin in encrypt mode, receiving plain instances (standard, lossless);

and prints wall time per instance, its ratio to the plain Orthanc of the same image in the same
run, the time the plugin adds over plain Orthanc's (as a multiple of it), and the hook's own mean
time per instance from GET /dicomcrypt/status. Startup (model load + warm-up) is timed apart.
Two images by default: CT_small (128x128, where per-instance fixed costs dominate) and 693_UNCR
(512x512 CT, the image of bench_network), each as N copies under new UIDs.

The issue-14 target, "restore and encrypt on ingest add no more than 2x plain Orthanc's
per-instance time" (standard and lossless): read strictly, the "x plain Orthanc" column at most
2; read literally, the "added / plain" column (x plain - 1) at most 2. Both are printed.
``--json FILE`` writes every figure for comparing runs.

    .venv/bin/python benchmarks/bench_orthanc.py [--count 40] [--image NAME ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dicomcrypt import Key, encrypt_dataset  # noqa: E402
from helpers.corpus import fresh_copy  # noqa: E402
from helpers.orthanc import OrthancServer, start_orthanc  # noqa: E402

DEFAULT_IMAGES = ("CT_small.dcm", "693_UNCR.dcm")  # 128x128 (fixed costs dominate) and 512x512 CT


def write_instances(folder: Path, image: str, count: int, key: Key | None, mode: str) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for index in range(count):
        ds = fresh_copy(image)
        if key is not None:
            ds = encrypt_dataset(ds, key=key, mode=mode)
        paths.append(folder / f"{index}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def send(server: OrthancServer, paths: list[Path]) -> float:
    started = time.perf_counter()
    done = server.store_scu(paths, timeout=3600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or len(server.instance_ids()) != len(paths):
        raise SystemExit(f"send failed:\n{done.stdout}{done.stderr}\n{server.log_tail()}")
    return elapsed


def run_case(root: Path, name: str, settings: dict | None, paths: list[Path]) -> tuple[float, float, float | None]:
    """(startup s, seconds per instance, hook mean seconds per instance)."""
    started = time.perf_counter()
    server = start_orthanc(root / name, dicomcrypt=settings)
    startup = time.perf_counter() - started
    try:
        per_instance = send(server, paths) / len(paths)
        hook = server.get_json("/dicomcrypt/status")["counts"]["mean_seconds"] if settings else None
    finally:
        server.stop()
    return startup, per_instance, hook


Case = tuple[str, dict | None, list[Path]]


def cases_for(root: Path, image: str, count: int, key: Key, key_file: Path) -> list[Case]:
    """Plain Orthanc first (the baseline of the ratios), then the plugin's four cases."""
    tag = Path(image).stem
    plain = write_instances(root / f"{tag}-plain", image, count, None, "")
    cases: list[Case] = [("plain Orthanc, plain instances", None, plain)]
    for mode in ("standard", "lossless"):
        sealed = write_instances(root / f"{tag}-sealed-{mode}", image, count, key, mode)
        cases.append((f"restore plugin, {mode} instances", {"Mode": "restore", "KeyFiles": [str(key_file)]}, sealed))
    for mode in ("standard", "lossless"):
        cases.append((f"encrypt plugin ({mode}), plain instances",
                      {"Mode": "encrypt", "KeyFiles": [str(key_file)], "EncryptMode": mode}, plain))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--image", action="append",
                        help=f"a pydicom test file name, repeatable (default: {' and '.join(DEFAULT_IMAGES)})")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    args = parser.parse_args()
    images = args.image or list(DEFAULT_IMAGES)

    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key = Key.generate()
        key_file = root / "site.key"
        key.save(key_file)
        for image in images:
            cases = cases_for(root, image, args.count, key, key_file)
            print(f"\n{args.count} x {image}, DCMTK storescu -> Orthanc, one association, "
                  f"load average {os.getloadavg()[0]:.1f}\n")
            print("| case | startup | per instance | x plain Orthanc | added / plain | hook mean per instance |")
            print("| --- | --- | --- | --- | --- | --- |")
            baseline = None
            for index, (label, settings, paths) in enumerate(cases):
                startup, per_instance, hook = run_case(root, f"{Path(image).stem}-case{index}", settings, paths)
                baseline = baseline or per_instance
                rows.append({"image": image, "case": label, "startup_s": startup,
                             "per_instance_ms": per_instance * 1000, "vs_plain_orthanc": per_instance / baseline,
                             "added_vs_plain": per_instance / baseline - 1,
                             "hook_mean_ms": hook * 1000 if hook is not None else None})
                hook_text = f"{hook * 1000:.1f} ms" if hook is not None else "-"
                print(f"| {label} | {startup:.1f} s | {per_instance * 1000:.1f} ms | "
                      f"{per_instance / baseline:.2f} | {per_instance / baseline - 1:.2f} | {hook_text} |", flush=True)
    load_after = os.getloadavg()[0]
    print(f"\nload average {load_before:.1f} at the start, {load_after:.1f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "count": args.count, "images": images, "load_average": load_before,
            "load_average_end": load_after, "rows": rows,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
