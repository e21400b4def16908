"""``dicomcrypt evaluate``: the paper's reconstruction figures, Table 6 and Figure 6 on your files.

For every image: PSNR (on the bit depth and over the image's range), SSIM and MSE of the lossy
reconstruction through the real path (normalise, encode, 8-bit latent, AES-256-GCM, decrypt,
decode); then salt-and-pepper, speckle, Poisson and Gaussian noise added before encoding, with
SSIM and MSE of noisy and decoded against the original; a Figure-6 PNG per image. Writes
OUT/report.json, OUT/report.md and OUT/figures/. Multi-frame objects: the middle frame unless
--frames all. Conventions and noise parameters: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_OK, EXIT_SOME_FAILED, error, plural


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="reconstruction quality, denoising (paper Table 6) and Figure 6 per image; JSON + Markdown report",
        description=__doc__,
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path, metavar="DICOM_DIR", help="DICOM file or folder (recursive)")
    parser.add_argument("--report", type=Path, required=True, metavar="OUT", help="folder for the report")
    parser.add_argument("--model", action="append", metavar="ID",
                        help="model id (name@version) or model folder (default: per channel count); "
                             "repeat to compare models side by side")
    parser.add_argument("--frames", choices=("middle", "all"), default="middle",
                        help="frames of a multi-frame object to evaluate (default: middle)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--force", action="store_true", help="replace an existing report in OUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.evaluation import report
    from dicomcrypt.files import iter_dicom_inputs

    if not args.input.exists():
        return error(f"input {args.input} does not exist")
    existing = [args.report / name for name in (report.JSON_NAME, report.MARKDOWN_NAME)]
    if not args.force and any(path.exists() for path in existing):
        return error(f"{args.report} already holds a report (use --force to replace it)")
    try:
        from dicomcrypt.codec.registry import load_model

        for model in args.model or []:
            load_model(model)  # an unknown model or bad weights stop the run before any work
        inputs = list(iter_dicom_inputs(args.input))
    except DicomCryptError as exc:
        return error(str(exc))

    results, skipped = [], []
    models = args.model or [None]
    outcomes = report.evaluate_inputs(inputs, args.report, models=models, seed=args.seed, frames=args.frames)
    from tqdm import tqdm

    with tqdm(total=len(inputs) * len(models), unit="image", file=sys.stderr, disable=args.no_progress) as bar:
        for outcome in outcomes:
            bar.update(1)
            if isinstance(outcome, report.Skipped):
                skipped.append(outcome)
                bar.write(f"{outcome.file}: {'FAILED' if outcome.failed else 'skipped'}: {outcome.reason}")
            else:
                results.append(outcome)
                q = outcome.reconstruction
                closer = sum(n.decoded_closer for n in outcome.noise)
                bar.write(f"{outcome.file} [{outcome.model_id}]: PSNR {q.psnr_bits_db:.2f} dB (bit depth) / "
                          f"{q.psnr_range_db:.2f} dB (range), SSIM {q.ssim:.4f}; "
                          f"decoder closer on {closer} of {len(outcome.noise)} noise types")
    doc = report.build_report(results, skipped, source=str(args.input), models=models, seed=args.seed,
                              frames=args.frames)
    json_path, md_path = report.write_report(args.report, doc)
    failed = [s for s in skipped if s.failed]
    print(f"{plural(len(results), 'image')} evaluated, {len(skipped) - len(failed)} skipped, "
          f"{len(failed)} failed; report: {md_path}, {json_path}")
    return EXIT_SOME_FAILED if failed or not results else EXIT_OK
