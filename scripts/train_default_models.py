#!/usr/bin/env python
"""Train the shipped models: autoencoders ``ps-grey@2``, ``ps-colour@1``; codecs ``wavelet-grey@1``, ``-colour@1``.

Which model is trained on which files with which recipe is all this script decides. Reading the
pixels (:func:`dicomcrypt.codec.train_data.collect`, as ``dicomcrypt train`` and inference read
them), training, export, the held-out evaluation (:mod:`dicomcrypt.evaluation`, as
``dicomcrypt evaluate`` measures it) and the model card (:func:`dicomcrypt.codec.train.model_card`)
are the library's.

Data: only images we may redistribute -- pydicom's bundled test files and pydicom-data (both MIT),
minus the held-out evaluation families: every file whose name starts with ``693_`` (CT), ``MR2_``
(MR), ``RG1_`` (radiograph) or ``US1_`` (colour ultrasound), and any other file of the same study
(pydicom's ``examples_jpeg2k.dcm`` is US1) or with the same pixels.

Repeatable: fixed seeds, a fixed number of steps, files read in sorted order, a fixed thread count.
(Bit-identical weights are expected on the same machine and torch build; another CPU may differ in
the last bits of training, which is why the *exported* weights and their SHA-256 are what count.)
The shipped ``paper-grey@1``, ``paper-colour@1`` and ``ps-grey@1`` came from earlier versions of
this script and stay shipped unchanged so old envelopes decode; new models get new ids.

The wavelet codec models (the encrypt default) are fitted, not trained by gradient:
:func:`dicomcrypt.codec.wavelet.fit.fit` counts their frequency tables and reconstruction offsets
on the same training files (frames read as integers, as the codec sees them), in CPU minutes.

Usage::

    .venv/bin/python scripts/train_default_models.py --models wavelet-grey wavelet-colour  # the codec models

    .venv/bin/python scripts/train_default_models.py --threads 1      # both models, a few CPU minutes each
    .venv/bin/python scripts/train_default_models.py --dry-run        # the plan: files, held out, recipe
    .venv/bin/python scripts/train_default_models.py --models grey --steps 5 --out /tmp/m   # smoke run
    .venv/bin/python scripts/train_default_models.py --evaluate-only  # re-measure the models in --out
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import platform
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dicomcrypt.codec import export, registry  # noqa: E402
from dicomcrypt.codec import train as training  # noqa: E402
from dicomcrypt.codec.train_data import collect, split_by_group  # noqa: E402
from dicomcrypt.crypto import Key  # noqa: E402

SEED = 20221130
HELD_OUT_PREFIXES = ("693_", "MR2_", "RG1_", "US1_")
HELD_OUT = ("files whose names start with " + ", ".join(f"`{p}`" for p in HELD_OUT_PREFIXES)
            + " (the evaluation families), and every other file of their studies or with their pixels")
VALIDATION_SHARE = 0.15
PIXELS_PER_BATCH = 16 * 96 * 96
TRAINED_BY = (
    "`scripts/train_default_models.py` through `dicomcrypt.codec.train` (the library behind `dicomcrypt train`)"
)


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: id, files, and the recipe (``RECIPES[init]`` plus ``overrides``)."""

    model_id: str
    stem: str
    channels: int
    init: str
    evaluate: tuple[str, ...]  # held-out files measured for the card
    arch: str = "ps-ae"
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self, steps: int | None = None) -> training.TrainConfig:
        overrides = {**self.overrides, **({"steps": steps} if steps else {})}
        return training.TrainConfig.recipe(self.arch, self.init, channels=self.channels, seed=SEED,
                                           pixels_per_batch=PIXELS_PER_BATCH, **overrides)


MODELS = {
    # From the 3-band Haar code, refined gently with the recipe `dicomcrypt train` uses from a Haar start.
    "grey": ShippedModel("ps-grey@2", "ps-grey-v2", 1, "haar", ("693_UNCR.dcm", "MR2_UNCR.dcm", "RG1_UNCR.dcm")),
    # A luma-Haar start was tried for colour and not shipped (docs/models.md): random init, 4000 steps.
    "colour": ShippedModel("ps-colour@1", "ps-colour-v1", 3, "random", ("US1_UNCR.dcm",), overrides={"steps": 4000}),
}


@dataclass(frozen=True)
class ShippedWavelet:
    """One shipped wavelet codec model: id, files, channels."""

    model_id: str
    stem: str
    channels: int


WAVELETS = {
    "wavelet-grey": ShippedWavelet("wavelet-grey@1", "wavelet-grey-v1", 1),
    "wavelet-colour": ShippedWavelet("wavelet-colour@1", "wavelet-colour-v1", 3),
}


def fit_wavelet(spec: ShippedWavelet, paths: list[Path], args: argparse.Namespace) -> Path | None:
    """Fit a wavelet codec model on the training files (held-out families excluded as for the autoencoders)."""
    import numpy as np

    from dicomcrypt.codec.train_data import MAX_FRAMES_PER_FILE, read_image
    from dicomcrypt.codec.wavelet.fit import fit, write_model
    from dicomcrypt.codec.wavelet.model import WaveletParams

    images, skipped = collect(paths, channels=spec.channels, exclude=HELD_OUT_PREFIXES)
    names = sorted({im.name for im in images})
    print(f"{spec.model_id}: fitting on {len(names)} files: " + ", ".join(names), flush=True)
    if args.dry_run:
        return None
    by_name: dict[str, Path] = {}
    for path in paths:
        by_name.setdefault(path.name, path)

    def frames():
        for name in names:
            read = read_image(by_name[name])
            if not isinstance(read, tuple):
                continue
            ds, stack, _padding = read
            colour = spec.channels == 3 and not str(ds.get("PhotometricInterpretation", "")).startswith("YBR")
            chosen = np.linspace(0, stack.shape[0] - 1, min(stack.shape[0], MAX_FRAMES_PER_FILE)).round().astype(int)
            for index in sorted(set(chosen.tolist())):
                yield stack[index], colour

    params, summary = fit(frames(), WaveletParams())
    summary.update(trained_by="`scripts/train_default_models.py` through `dicomcrypt.codec.wavelet.fit`",
                   held_out=HELD_OUT, files=names, skipped=len(skipped))
    meta_path = write_model(args.out, spec.stem, spec.model_id, channels=spec.channels, params=params,
                            extra={"training": summary})
    registry.clear_cache()
    print(f"{spec.model_id}: wrote {meta_path} ({summary['frames']} frames)", flush=True)
    return meta_path


def data_dirs() -> list[Path]:
    """pydicom's bundled test files and pydicom-data's files."""
    import data_store  # pydicom-data
    import pydicom

    return [Path(pydicom.__file__).parent / "data" / "test_files", Path(data_store.__file__).parent / "data"]


def files_under(folders: list[Path]) -> list[Path]:
    """Every file below ``folders``, folder by folder, each in sorted order."""
    return [path for folder in folders for path in sorted(p for p in folder.rglob("*") if p.is_file())]


def train(spec: ShippedModel, paths: list[Path], args: argparse.Namespace) -> Path | None:
    """Collect, split, train, export; returns the metadata path (None for a dry run)."""
    images, skipped = collect(paths, channels=spec.channels, exclude=HELD_OUT_PREFIXES)
    train_images, validation_images = split_by_group(images, VALIDATION_SHARE, SEED)
    config = spec.config(args.steps)
    print(f"{spec.model_id}: {config}")
    print(f"  training ({len(train_images)}): " + ", ".join(im.name for im in train_images))
    print(f"  validation ({len(validation_images)}): " + ", ".join(im.name for im in validation_images))
    for reason in sorted({s.reason for s in skipped}):
        names = sorted(Path(s.name).name for s in skipped if s.reason == reason)
        print(f"  skipped, {reason} ({len(names)}): " + ", ".join(names))
    if args.dry_run:
        return None

    def report(p: training.Progress) -> None:
        if p.step % 50 == 0 or p.step == p.steps:
            extra = f" validation {p.validation:.3e}" if p.validation is not None else ""
            print(f"{spec.model_id} step {p.step}/{p.steps} loss {p.loss:.3e} ({-10 * math.log10(p.loss):.2f} dB)"
                  f"{extra} {p.seconds:.0f}s", flush=True)

    network, history, summary = training.train(config, train_images, validation_images, args.workdir / spec.stem,
                                                on_step=report)
    curve = f"{spec.stem}-loss.png"
    summary.update(trained_by=TRAINED_BY, held_out=HELD_OUT, skipped=len(skipped), loss_curve=curve,
                   images=len(images), history={"train": history.train, "validation": history.validation})
    meta_path = training.export(network, images, args.out, stem=spec.stem, model_id=spec.model_id,
                                metadata={"training": summary, "card": f"{spec.stem}.md"}, seed=SEED)
    training.plot_loss_curve(history, args.out / curve, f"{spec.model_id} training")
    registry.clear_cache()
    model = registry.load_model(str(meta_path))
    by_name = {path.name: path for path in paths}
    levels, totals = training.choose_lossless_levels(model, [by_name[name] for name in summary["train_files"]])
    print("  lossless latent levels: " + ", ".join(f"{k}: {v:,} B" for k, v in totals.items()) + f" -> {levels}")
    export.update_metadata(meta_path, lossless_latent_levels=levels,
                             validation=training.measure(model, validation_images))
    return meta_path


def evaluate(spec: ShippedModel, meta_path: Path, paths: list[Path]) -> list[dict[str, Any]]:
    """The held-out files as ``dicomcrypt evaluate`` measures them, plus the payloads the pipeline seals."""
    from dicomcrypt.evaluation.bench import payload_bytes
    from dicomcrypt.evaluation.evaluate import evaluate_file
    from dicomcrypt.files import read_dicom

    registry.clear_cache()
    key = Key.generate()
    model = str(meta_path)
    by_name = {path.name: path for path in paths}
    rows = []
    for name in spec.evaluate:
        if name not in by_name:
            print(f"  {name}: not among the data files, not evaluated")
            continue
        result, _panels = evaluate_file(by_name[name], name, model_id=model, key=key, seed=SEED)
        ds = read_dicom(by_name[name])
        row = {"file": name, "modality": result.modality, "size": f"{result.columns}x{result.rows}",
               **dataclasses.asdict(result.reconstruction), "raw_bytes": result.raw_bytes,
               "latent_bytes": result.latent_bytes, "encode_s": result.encode_s, "decode_s": result.decode_s,
               "lossless_payload_bytes": payload_bytes(ds, "lossless", model_id=model, key=key),
               "standard_payload_bytes": payload_bytes(ds, "standard", model_id=model, key=key),
               "noise": {n.kind: {**dataclasses.asdict(n), "decoded_closer": n.decoded_closer} for n in result.noise}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def environment() -> dict[str, str]:
    return {"python": platform.python_version(),
            **{name: importlib.metadata.version(name) for name in ("torch", "numpy", "pydicom")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS) + sorted(WAVELETS), default=["grey", "colour"])
    parser.add_argument("--steps", type=int, help="override the number of training steps (smoke runs)")
    parser.add_argument("--out", type=Path, default=REPO / "dicomcrypt" / "models")
    parser.add_argument("--data", type=Path, nargs="+",
                        help="folders of training and held-out files (default: pydicom's test files and pydicom-data)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (recipe, files, exclusions) and stop")
    parser.add_argument("--evaluate-only", action="store_true", help="skip training; re-evaluate the models in --out")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (1 on a busy shared machine)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dicomcrypt-train"),
                        help="checkpoints (a rerun resumes from here)")
    args = parser.parse_args(argv)
    training.set_threads(args.threads)
    warnings.filterwarnings("ignore")  # pydicom complains about many of its own test files
    paths = files_under(args.data or data_dirs())
    for kind in args.models:
        if kind in WAVELETS:
            fit_wavelet(WAVELETS[kind], paths, args)
            continue
        spec = MODELS[kind]
        meta_path: Path | None = args.out / f"{spec.stem}.json"
        if not args.evaluate_only:
            meta_path = train(spec, paths, args)
        if meta_path is None:
            continue
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        training.finish_model(meta_path, meta.get("validation") or [], evaluation=evaluate(spec, meta_path, paths),
                              environment=environment())
        print(f"{spec.model_id}: wrote {meta_path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
