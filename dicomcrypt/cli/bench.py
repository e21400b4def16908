"""``dicomcrypt bench``: the paper's Table 3 on your files, measured honestly.

Per image: AES-256-GCM on the raw pixels against encoder + AES-256-GCM on the latent (sender),
AES + decoder against AES alone (receiver), and payload sizes against the raw pixels and lossless
JPEG-LS (the pipeline's real payloads). Medians of --repeat runs after a warm-up run.
Multi-frame objects: timings on the middle frame, sizes of the whole object.
The paper's figures (224x224x3, its machine): AES 0.05 / 0.05 s, AE + AES 0.016 / 0.017 s.

With --rd DIR it draws the rate-distortion report instead: per image, PSNR over the image's range
and SSIM against bits per pixel for every lossy setting of our codec (each shipped model of the
image's channel count, the paper's network among them, each latent format), JPEG 2000, HTJ2K,
JPEG-XL and JPEG-LS near-lossless on the same pixels (every stream decoded back and measured), and
BD-rates against JPEG 2000 over 35-55 dB. DIR gets one PNG per image, rd.json and rd.md.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_OK, EXIT_SOME_FAILED, error, plural

if TYPE_CHECKING:
    from dicomcrypt.codec.runtime import TorchRuntime
    from dicomcrypt.crypto import Key
    from dicomcrypt.evaluation.bench import BenchRow


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time AES on raw pixels vs encoder + AES on the latent (paper Table 3); sizes vs JPEG-LS",
        description=__doc__,
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path, metavar="DICOM_DIR", help="DICOM file or folder (recursive)")
    parser.add_argument("--model", action="append", metavar="ID",
                        help="model id (name@version) or model folder (default: per channel count); "
                             "repeat to compare models in one run")
    parser.add_argument("--repeat", type=int, default=5, metavar="N",
                        help="timed runs per step after a warm-up (default 5)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON (atomically)")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file or --rd report")
    parser.add_argument("--rd", type=Path, metavar="DIR",
                        help="write the rate-distortion report (PNG per image, rd.json, rd.md) into DIR "
                             "and print its BD-rate table, instead of timing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.codec.runtime import torch_runtime
    from dicomcrypt.crypto import Key
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.evaluation import bench
    from dicomcrypt.files import iter_dicom_inputs, write_bytes_atomic

    if args.repeat < 1:
        return error("--repeat must be at least 1")
    if not args.input.exists():
        return error(f"input {args.input} does not exist")
    if args.rd is not None:
        return _run_rd(args)
    if args.json and args.json.exists() and not args.force:
        return error(f"{args.json} exists (use --force to replace it)")
    try:
        from dicomcrypt.codec.registry import load_model

        for model in args.model or []:
            load_model(model)
        inputs = list(iter_dicom_inputs(args.input))
    except DicomCryptError as exc:
        return error(str(exc))

    runtime = torch_runtime()
    print(f"medians of {args.repeat} runs after a warm-up; {runtime.threads} torch threads; "
          "ratio = autoencoder path / plain AES on the raw pixels")
    print(bench.SUBHEADER)
    print(bench.HEADER, flush=True)
    rows, skipped, failed = _measure(inputs, args.model or [None], key=Key.generate(), repeat=args.repeat)
    p = bench.PAPER_TABLE3
    print(f"paper, Table 3 (224x224x3): "
          f"AES {p['aes_raw_encrypt_s'] * 1e3:.0f} / {p['aes_raw_decrypt_s'] * 1e3:.0f} ms, "
          f"AE + AES {p['ae_aes_encrypt_s'] * 1e3:.0f} / {p['ae_aes_decrypt_s'] * 1e3:.0f} ms")
    print(f"{plural(len(rows), 'image')} measured, {len(skipped)} skipped, {len(failed)} failed")
    if args.json:
        doc = _json_report(args, runtime, rows, skipped, failed)
        write_bytes_atomic((json.dumps(doc, indent=2) + "\n").encode(), args.json, force=args.force)
        print(f"JSON: {args.json}")
    return EXIT_SOME_FAILED if failed or not rows else EXIT_OK


def _measure(
    inputs: list[tuple[Path, Path]], models: list[str | None], *, key: Key, repeat: int
) -> tuple[list[BenchRow], list[dict[str, str]], list[dict[str, str]]]:
    """Bench every input with every model, printing each row: (rows, skipped, failed)."""
    from dicomcrypt.errors import DicomCryptError, InvalidInputError, PixelDecodeError
    from dicomcrypt.evaluation import bench

    rows: list[BenchRow] = []
    skipped: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    for (path, relative), model in itertools.product(inputs, models):
        name = relative.as_posix()
        try:
            row = bench.bench_file(path, name, model_id=model, key=key, repeat=repeat)
        except PixelDecodeError as exc:
            failed.append({"file": name, "error": str(exc)})
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            continue
        except InvalidInputError as exc:
            if {"file": name, "reason": str(exc)} in skipped:
                continue
            skipped.append({"file": name, "reason": str(exc)})
            print(f"{name}: skipped: {exc}", file=sys.stderr)
            continue
        except DicomCryptError as exc:
            failed.append({"file": name, "error": f"{type(exc).__name__}: {exc}"})
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            continue
        rows.append(row)
        print(bench.format_row(row), flush=True)
    return rows, skipped, failed


def _json_report(
    args: argparse.Namespace,
    runtime: TorchRuntime,
    rows: list[BenchRow],
    skipped: list[dict[str, str]],
    failed: list[dict[str, str]],
) -> dict[str, Any]:
    """The ``--json`` document: the rows plus what the timings depend on (machine, versions)."""
    from dicomcrypt.evaluation import bench

    return {
        "report": "dicomcrypt bench",
        "format": 1,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": str(args.input),
        "repeat": args.repeat,
        "torch_threads": runtime.threads,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": runtime.version,
        "paper_table3": bench.PAPER_TABLE3,
        "images": [row.to_json() for row in rows],
        "skipped": skipped,
        "failed": failed,
    }


RD_JSON, RD_MARKDOWN = "rd.json", "rd.md"


def _run_rd(args: argparse.Namespace) -> int:
    """``bench --rd DIR``: every image's RD points and plot, the BD-rate table; files written atomically."""
    from dicomcrypt.crypto import Key
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.evaluation import rd
    from dicomcrypt.files import iter_dicom_inputs, read_dicom, write_bytes_atomic

    out: Path = args.rd
    if out.exists() and not out.is_dir():
        return error(f"--rd {out} is not a folder")
    if not args.force and any((out / name).exists() for name in (RD_JSON, RD_MARKDOWN)):
        return error(f"{out} already holds an RD report (use --force to replace it)")
    if args.model:
        return error("--rd measures every shipped model; leave out --model")
    try:
        inputs = list(iter_dicom_inputs(args.input))
    except DicomCryptError as exc:
        return error(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    key = Key.generate()
    results: list[rd.ImageRD] = []
    headlines: dict[str, str] = {}
    skipped: list[dict[str, str]] = []
    for path, relative in inputs:
        name = relative.as_posix()
        print(f"{name}: measuring our codec and the anchors ...", flush=True)
        try:
            ds = read_dicom(path)
            result = rd.image_rd(ds, name, key=key)
        except DicomCryptError as exc:
            skipped.append({"file": name, "reason": str(exc)})
            print(f"{name}: skipped: {exc}", file=sys.stderr)
            continue
        headlines[name] = rd.headline_curve(result.points, int(ds.get("SamplesPerPixel", 1)))
        results.append(result)
        png = out / (relative.as_posix().replace("/", "_") + ".rd.png")
        write_bytes_atomic(rd.plot(result, headlines[name]), png, force=True)
        print(f"{name}: {len(result.points)} points; plot {png}", flush=True)
    markdown = rd.to_markdown(results, headlines)
    doc = {
        "report": "dicomcrypt bench --rd",
        "format": 1,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": str(args.input),
        "summary": rd.summary(results, headlines),
        "headline_curves": headlines,
        "images": [r.to_json() for r in results],
        "skipped": skipped,
    }
    write_bytes_atomic((json.dumps(doc, indent=2, allow_nan=False) + "\n").encode(), out / RD_JSON, force=True)
    write_bytes_atomic(markdown.encode(), out / RD_MARKDOWN, force=True)
    print(markdown.split("\n## ")[0].rstrip())
    print(f"report: {out / RD_MARKDOWN}, {out / RD_JSON}; {plural(len(results), 'image')} measured, "
          f"{len(skipped)} skipped")
    return EXIT_OK if results else EXIT_SOME_FAILED
