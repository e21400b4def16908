"""Evaluate a folder and write the report: ``report.json``, ``report.md`` and ``figures/*.png``.

Every file is written atomically (temp file + rename), so an interrupted run leaves either the
previous report or the new one, never half of one. The JSON holds every figure, the conventions
and the noise parameters, so a report can be compared with another without guessing.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import math
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomcrypt.crypto import Key
from dicomcrypt.errors import DicomCryptError, InvalidInputError, PixelDecodeError
from dicomcrypt.evaluation.evaluate import ImageResult, evaluate_file
from dicomcrypt.files import write_bytes_atomic
from dicomcrypt.noise import NOISE_KINDS, NOISE_PARAMETERS, describe_parameters

REPORT_FORMAT = 1
JSON_NAME = "report.json"
MARKDOWN_NAME = "report.md"
FIGURES = "figures"

CONVENTIONS = {
    "psnr_bits_db": "PSNR with peak 2**BitsStored - 1 (the image's bit depth), on the stored integers",
    "psnr_range_db": "PSNR with peak max - min of the original stored values (harder; flatters less)",
    "ssim": "scikit-image SSIM (7x7 window) with data range max - min of the original, stored integers",
    "mse": "mean squared error in stored units",
    "ssim_unit / mse_unit": "the same on the codec's [0, 1] scale (each frame's range, padding excluded, "
    "mapped to [0, 1]); comparable with the paper's SSIM 0.9528 / MSE 0.0019",
    "window_mae_hu": "CT only: mean absolute error in HU over pixels whose original lies in the "
    "brain window C40/W100",
    "noise": "Table 6: noise added to the clean [0, 1] image before encoding; noisy and decoded(noisy) "
    "compared with the clean image on [0, 1]; 'closer' = SSIM higher and MSE lower after decoding",
    "reconstruction path": "normalise, encode, 8-bit quantised latent, AES-256-GCM envelope, decrypt, "
    "fixed-point decoder, stored integers, padding restored from its mask (the lossy mode)",
}

# design.md section 1: the paper's own figures, shown beside ours.
PAPER_RECONSTRUCTION: dict[str, float] = {"ssim": 0.9528, "mse": 0.0019}
PAPER_TABLE6: dict[str, dict[str, float]] = {
    "salt_and_pepper": {"ssim_noisy": 0.93, "ssim_decoded": 0.94},
    "speckle": {"ssim_noisy": 0.06, "ssim_decoded": 0.23},
    "poisson": {"ssim_noisy": 0.79, "ssim_decoded": 0.90},
    "gaussian": {"ssim_noisy": 0.13, "ssim_decoded": 0.41},
}
PAPER = {"reconstruction": PAPER_RECONSTRUCTION, "table6": PAPER_TABLE6}


@dataclass(frozen=True)
class Skipped:
    """A file that was not evaluated: not DICOM, no pixels, or pixels the model does not take."""

    file: str
    reason: str
    failed: bool = False


def evaluate_inputs(
    inputs: Iterable[tuple[Path, Path]],
    out: Path,
    *,
    models: Sequence[str | None] = (None,),
    seed: int = 0,
    frames: str = "middle",
) -> Iterator[ImageResult | Skipped]:
    """Evaluate each ``(path, relative name)`` with each model and write its figure; yield as
    each finishes. ``None`` in ``models`` is the default model for the image's channel count;
    several models put their architectures side by side in one report (same noise per file).

    A throwaway key seals the latents: the key does not change any figure.
    """
    key = Key.generate()
    for (path, relative), model_id in itertools.product(inputs, models):
        name = relative.as_posix()
        try:
            result, panels = evaluate_file(path, name, model_id=model_id, key=key, seed=seed, frames=frames)
        except PixelDecodeError as exc:
            yield Skipped(name, f"{type(exc).__name__}: {exc}", failed=True)
            continue
        except InvalidInputError as exc:  # not DICOM, no pixels, pixels the model does not take
            yield Skipped(name, str(exc))
            continue
        except DicomCryptError as exc:
            yield Skipped(name, f"{type(exc).__name__}: {exc}", failed=True)
            continue
        from dicomcrypt.evaluation.figure import figure6_png

        title = f"{name} ({result.modality}, {result.columns}x{result.rows}) - {result.model_id}"
        write_bytes_atomic(figure6_png(panels, title), out / figure_name(name, result.model_id), force=True)
        yield result


def figure_name(name: str, model_id: str) -> str:
    """``a/b.dcm``, ``paper-grey@1`` -> ``figures/a__b.dcm.paper-grey@1.png``."""
    return f"{FIGURES}/{name.replace('/', '__')}.{model_id}.png"


def build_report(
    results: list[ImageResult],
    skipped: list[Skipped],
    *,
    source: str,
    models: Sequence[str | None] = (None,),
    seed: int,
    frames: str,
) -> dict[str, Any]:
    """The JSON document (plain data, no infinities)."""
    # A file skipped for the same reason by several models is listed once; one that another model
    # evaluated (a grey image with the colour model beside the grey one) is not listed at all.
    evaluated = {r.file for r in results}
    skipped = [s for s in dict.fromkeys(skipped) if s.failed or s.file not in evaluated]
    from dicomcrypt import __version__

    images = []
    for r in results:
        row = dataclasses.asdict(r)
        row["frames_evaluated"] = list(r.frames_evaluated)
        row["noise"] = {n.kind: {**dataclasses.asdict(n), "decoded_closer": n.decoded_closer} for n in r.noise}
        for entry in row["noise"].values():
            del entry["kind"]
        row["latent_vs_raw"] = r.latent_bytes / r.raw_bytes
        row["figure"] = figure_name(r.file, r.model_id)
        images.append(row)
    return _finite(
        {
            "report": "dicomcrypt evaluate",
            "format": REPORT_FORMAT,
            "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "dicomcrypt_version": __version__,
            "source": source,
            "models_requested": [m or "default for each image's channel count" for m in models],
            "models": sorted({r.model_id for r in results}),
            "frames": frames,
            "seed": seed,
            "conventions": CONVENTIONS,
            "noise_parameters": describe_parameters(),
            "paper": PAPER,
            "images": images,
            "skipped": [{"file": s.file, "reason": s.reason} for s in skipped if not s.failed],
            "failed": [{"file": s.file, "error": s.reason} for s in skipped if s.failed],
            "summary": _summary(results),
            "by_model": {
                m: _summary([r for r in results if r.model_id == m]) for m in sorted({r.model_id for r in results})
            },
        }
    )


def write_report(out: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` atomically; returns their paths."""
    json_path, md_path = out / JSON_NAME, out / MARKDOWN_NAME
    write_bytes_atomic((json.dumps(report, indent=2, allow_nan=False) + "\n").encode(), json_path, force=True)
    write_bytes_atomic(to_markdown(report).encode(), md_path, force=True)
    return json_path, md_path


def _summary(results: list[ImageResult]) -> dict[str, Any]:
    if not results:
        return {"images": 0}
    recon = [r.reconstruction for r in results]
    summary: dict[str, Any] = {
        "images": len(results),
        "ssim_min": min(q.ssim for q in recon),
        "ssim_median": statistics.median(q.ssim for q in recon),
        "psnr_bits_db_min": min(q.psnr_bits_db for q in recon),
        "psnr_bits_db_median": statistics.median(q.psnr_bits_db for q in recon),
        "psnr_range_db_min": min(q.psnr_range_db for q in recon),
        "psnr_range_db_median": statistics.median(q.psnr_range_db for q in recon),
        "ssim_unit_mean": statistics.fmean(q.ssim_unit for q in recon),
        "mse_unit_mean": statistics.fmean(q.mse_unit for q in recon),
        "latent_vs_raw_max": max(r.latent_bytes / r.raw_bytes for r in results),
        "targets": _targets(results),
        "encode_s_total": sum(r.encode_s for r in results),
        "decode_s_total": sum(r.decode_s for r in results),
        "noise": {},
    }
    for kind in NOISE_KINDS:
        rows = [n for r in results for n in r.noise if n.kind == kind]
        summary["noise"][kind] = {
            "ssim_noisy_mean": statistics.fmean(n.ssim_noisy for n in rows),
            "ssim_decoded_mean": statistics.fmean(n.ssim_decoded for n in rows),
            "mse_noisy_mean": statistics.fmean(n.mse_noisy for n in rows),
            "mse_decoded_mean": statistics.fmean(n.mse_decoded for n in rows),
            "decoded_closer": sum(n.decoded_closer for n in rows),
            "images": len(rows),
        }
    return summary


def _targets(results: list[ImageResult]) -> dict[str, bool]:
    """The issue's lossy-mode and denoising targets, met or not, on these images."""
    ssims = [r.reconstruction.ssim for r in results]
    return {
        "ssim_above_paper_on_every_image": min(ssims) > PAPER_RECONSTRUCTION["ssim"],
        "ssim_median_at_least_0.98": statistics.median(ssims) >= 0.98,
        "psnr_bits_at_least_45_db_on_every_image": min(r.reconstruction.psnr_bits_db for r in results) >= 45.0,
        "latent_smaller_than_raw_on_every_image": all(r.latent_bytes < r.raw_bytes for r in results),
        "decoder_closer_for_every_noise_on_every_image": all(n.decoded_closer for r in results for n in r.noise),
    }


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: reconstruction, Table 6, parameters, conventions."""
    images = report["images"]
    lines = [
        "# dicomcrypt evaluate",
        "",
        f"Source `{report['source']}`; model {', '.join(f'`{m}`' for m in report['models']) or '-'} "
        f"(asked for: {', '.join(report['models_requested'])}); frames: {report['frames']}; "
        f"noise seed {report['seed']}; "
        f"{report['created_utc']}, dicomcrypt {report['dicomcrypt_version']}.",
        "",
        "## Reconstruction (lossy mode)",
        "",
        "| file | model | modality | W x H x C | bits | PSNR bit depth | PSNR range | SSIM | MSE | SSIM [0,1] "
        "| MSE [0,1] | brain-window MAE | latent / raw bytes | encode / decode | figure |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in images:
        q = r["reconstruction"]
        window = "-" if q["window_mae_hu"] is None else f"{q['window_mae_hu']:.1f} HU"
        lines.append(
            f"| {r['file']} | {r['model_id']} | {r['modality']} | {r['columns']}x{r['rows']}x{r['samples']} "
            f"| {r['bits_stored']} "
            f"| {_db(q['psnr_bits_db'])} | {_db(q['psnr_range_db'])} | {q['ssim']:.4f} | {q['mse']:.4g} "
            f"| {q['ssim_unit']:.4f} | {q['mse_unit']:.2e} | {window} "
            f"| {r['latent_bytes']:,} / {r['raw_bytes']:,} ({r['latent_vs_raw']:.1%}) "
            f"| {_seconds(r['encode_s'])} / {_seconds(r['decode_s'])} | [png]({r['figure']}) |"
        )
    for model, summary in report["by_model"].items():
        lines += [
            "",
            f"`{model}`, {summary['images']} image{'' if summary['images'] == 1 else 's'}: "
            f"SSIM min {summary['ssim_min']:.4f}, median {summary['ssim_median']:.4f} (paper 0.9528); "
            f"PSNR on the bit depth min {_db(summary['psnr_bits_db_min'])}, "
            f"median {_db(summary['psnr_bits_db_median'])}; over range min {_db(summary['psnr_range_db_min'])}; "
            f"MSE on [0, 1] mean {summary['mse_unit_mean']:.2e} (paper 0.0019); "
            f"decode {summary['decode_s_total']:.1f} s "
            "in all. Targets: " + "; ".join(
                f"{name.replace('_', ' ')}: {'met' if met else 'NOT met'}" for name, met in summary["targets"].items()
            ) + ".",
        ]
    lines += [
        "",
        "## Denoising (the paper's Table 6)",
        "",
        "Noise added to the clean image (on [0, 1]) before encoding; SSIM and MSE against the clean image.",
        "",
        "| file | model | noise | SSIM noisy | SSIM decoded | MSE noisy | MSE decoded | decoder closer |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in images:
        for kind, n in r["noise"].items():
            lines.append(
                f"| {r['file']} | {r['model_id']} | {NOISE_PARAMETERS[kind].label} "
                f"| {n['ssim_noisy']:.4f} | {n['ssim_decoded']:.4f} "
                f"| {n['mse_noisy']:.2e} | {n['mse_decoded']:.2e} | {'yes' if n['decoded_closer'] else 'no'} |"
            )
    if images:
        lines += [
            "",
            "Means over the images, with the paper's fundus figures:",
            "",
            "| model | noise | SSIM noisy | SSIM decoded | paper SSIM noisy / decoded | MSE noisy | MSE decoded "
            "| decoder closer |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
    for model, summary in report["by_model"].items():
        for kind, n in summary["noise"].items():
            paper = PAPER_TABLE6[kind]
            lines.append(
                f"| {model} | {NOISE_PARAMETERS[kind].label} "
                f"| {n['ssim_noisy_mean']:.4f} | {n['ssim_decoded_mean']:.4f} "
                f"| {paper['ssim_noisy']:.2f} / {paper['ssim_decoded']:.2f} | {n['mse_noisy_mean']:.2e} "
                f"| {n['mse_decoded_mean']:.2e} | {n['decoded_closer']} of {n['images']} |"
            )
    lines += [
        "", "## Noise parameters (on the [0, 1] scale)", "", "| noise | parameters | model |", "| --- | --- | --- |"
    ]
    for p in report["noise_parameters"]:
        params = ", ".join(f"{k} {v:g}" for k, v in p["parameters"].items())
        lines.append(f"| {p['label']} | {params} | {p['description']} |")
    lines += ["", "## Conventions", ""]
    lines += [f"- `{name}`: {text}" for name, text in report["conventions"].items()]
    if report["skipped"] or report["failed"]:
        lines += ["", "## Not evaluated", ""]
        lines += [f"- {s['file']}: skipped: {s['reason']}" for s in report["skipped"]]
        lines += [f"- {s['file']}: FAILED: {s['error']}" for s in report["failed"]]
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    return f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s"


def _db(value: float | None) -> str:
    return "inf" if value is None else f"{value:.2f} dB"


def _finite(value: Any) -> Any:
    """JSON has no infinity: a PSNR of identical images becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
