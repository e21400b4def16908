"""``dicomcrypt train DICOM_DIR --modality CT --out ct-model/``: a site's own model.

Reads every DICOM image below DICOM_DIR (of the modality and channel count asked for), splits it
into training and validation by study (never a slice of one study on both sides; seeded), trains
with a share of noisy inputs (the paper's decoder also denoises), and writes a model folder that
``--model ct-model/`` accepts everywhere (encrypt, decrypt, evaluate, bench):

    model.json    id, architecture, channels, SHA-256 of the weights, calibration, training summary
    model.pt      weights (float network + the exact fixed-point decoder)
    model.md      model card with the validation quality measured by the exact decoder
    loss.png      training and validation loss (the paper's Figure 5)
    checkpoint.pt resume point: run the same command again after an interruption to continue

Uses a GPU when there is one. ``--arch wavelet`` fits a wavelet codec model instead (docs/codec.md:
frequency tables and reconstruction offsets counted on every image, CPU minutes, no split; the
folder then holds ``model.json``, ``model.params`` and ``model.md``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, error
from dicomcrypt.codec.arch import ARCHITECTURES, DEFAULT_ARCHITECTURE

STEM = "model"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on a folder of DICOM images (resumable); writes a model folder",
        description=__doc__,
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path, metavar="DICOM_DIR", help="folder of DICOM files (recursive)")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write (and resume from)")
    parser.add_argument("--modality", help="use only images of this Modality (e.g. CT, MR, CR)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1, help="1 grey (default) or 3 colour")
    parser.add_argument("--arch", choices=[*sorted(ARCHITECTURES), "wavelet"], default=DEFAULT_ARCHITECTURE,
                        help=f"network architecture (default {DEFAULT_ARCHITECTURE}; docs/models.md compares them), "
                             "or wavelet: fit the wavelet codec's tables (docs/codec.md)")
    parser.add_argument("--init",
                        help="starting point, one the architecture offers (default: its own, e.g. for ps-ae a "
                             "3-band Haar code of each 2x2 block; an init it does not offer is refused with the list)")
    parser.add_argument("--steps", type=int,
                        help="training steps (default 1000 from the Haar start, 2000 from a random one)")
    parser.add_argument("--learning-rate", type=float,
                        help="peak learning rate (default 3e-4 from the Haar start, 3e-3 from a random one)")
    parser.add_argument("--seed", type=int, default=20221130)
    parser.add_argument("--validation-share", type=float, default=0.2,
                        help="share of studies held out for validation (default 0.2)")
    parser.add_argument("--noise-share", type=float,
                        help="share of training crops given one of the four noise types "
                             "(default 0.2 from the Haar start, 0.1 from a random one)")
    parser.add_argument("--model-id", help="name@version (default: site-<modality>@1)")
    parser.add_argument("--threads", type=int, help="CPU threads for training (default: one per core)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.arch == "wavelet":
        return fit_wavelet(args)
    from dicomcrypt.codec import registry
    from dicomcrypt.codec import train as training
    from dicomcrypt.codec.train_data import collect, split_by_group
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.files import iter_dicom_inputs

    overrides = {name: value for name, value in (("steps", args.steps), ("learning_rate", args.learning_rate),
                                                 ("noise_share", args.noise_share)) if value is not None}
    try:
        config = training.TrainConfig.recipe(args.arch, args.init, channels=args.channels, seed=args.seed, **overrides)
    except DicomCryptError as exc:  # an init the architecture does not offer: a usage error, as argparse's
        error(str(exc))
        return EXIT_USAGE
    if config.steps < 1:
        return error("--steps must be at least 1")
    if config.learning_rate <= 0:
        return error("--learning-rate must be positive")
    if not 0 <= args.validation_share < 1 or not 0 <= config.noise_share <= 1:
        return error("--validation-share must be in [0, 1) and --noise-share in [0, 1]")
    model_id = args.model_id or f"site-{_slug(args.modality or 'any')}@1"
    if args.threads:
        training.set_threads(args.threads)
    try:
        paths = [path for path, _rel in iter_dicom_inputs(args.input)]
        images, skipped = collect(paths, channels=args.channels, modality=args.modality)
        train_images, validation_images = split_by_group(images, args.validation_share, args.seed)
        print(f"{len(images)} images from {len({im.group for im in images})} studies "
              f"({len(train_images)} training, {len(validation_images)} validation); "
              f"{len(skipped)} files skipped")
        device = training.pick_device()
        print(f"training {args.arch} on {device} for {config.steps} steps; checkpoints in {args.out}")
        with _ProgressBar(config.steps) as bar:
            network, history, summary = training.train(config, train_images, validation_images, args.out,
                                                       on_step=bar.update, device=device)
        summary["skipped"] = len(skipped)
        meta_path = training.export(network, train_images, args.out, stem=STEM, model_id=model_id,
                                    metadata={"training": summary, "card": f"{STEM}.md"}, seed=args.seed)
        training.plot_loss_curve(history, args.out / "loss.png", f"{model_id} training")
        registry.clear_cache()
        model = registry.load_model(str(args.out))
        rows = training.measure(model, validation_images)
        training.finish_model(meta_path, rows)
    except KeyboardInterrupt:
        print(f"\ninterrupted; run the same command again to resume from {args.out / training.CHECKPOINT}")
        return EXIT_INTERRUPTED
    except DicomCryptError as exc:
        return error(str(exc))
    for row in rows:
        print(f"  {row['file']}: PSNR {row['psnr_db']:.2f} dB, SSIM {row['ssim']:.4f} (validation, exact decoder)")
    print(f"model {model_id} written to {args.out} (use --model {args.out})")
    return EXIT_OK


def fit_wavelet(args: argparse.Namespace) -> int:
    """Fit a wavelet codec model on every image of the folder (the codec's learned tables and offsets)."""
    import numpy as np

    from dicomcrypt.codec import registry
    from dicomcrypt.codec.train_data import MAX_FRAMES_PER_FILE, read_image
    from dicomcrypt.codec.wavelet.fit import fit, write_model
    from dicomcrypt.codec.wavelet.model import WaveletParams
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.files import iter_dicom_inputs

    model_id = args.model_id or f"site-wavelet-{_slug(args.modality or 'any')}@1"
    paths = [path for path, _rel in iter_dicom_inputs(args.input)]
    used: list[str] = []

    def frames():
        for path in paths:
            read = read_image(path, args.modality)
            if not isinstance(read, tuple) or read[1].shape[-1] != args.channels:
                continue
            ds, stack, _padding = read
            used.append(path.name)
            colour = args.channels == 3 and not str(ds.get("PhotometricInterpretation", "")).startswith("YBR")
            for index in sorted(set(np.linspace(0, stack.shape[0] - 1, min(stack.shape[0], MAX_FRAMES_PER_FILE))
                                    .round().astype(int).tolist())):
                yield stack[index], colour

    try:
        params, summary = fit(frames(), WaveletParams())
        if not used:
            return error(f"no {args.channels}-sample images{' of ' + args.modality if args.modality else ''} "
                         f"below {args.input}")
        args.out.mkdir(parents=True, exist_ok=True)
        summary.update(trained_by="`dicomcrypt train --arch wavelet`", files=used, held_out="none")
        write_model(args.out, STEM, model_id, channels=args.channels, params=params, extra={"training": summary})
        registry.clear_cache()
        registry.load_codec(str(args.out))
    except DicomCryptError as exc:
        return error(str(exc))
    print(f"wavelet model {model_id} fitted on {summary['frames']} frames of {len(used)} files, written to "
          f"{args.out} (use --model {args.out})")
    return EXIT_OK


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "any"


class _ProgressBar:
    """tqdm over the steps, showing the loss; quiet when stderr is not a terminal."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, mininterval=1.0)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def update(self, progress: object) -> None:
        step = getattr(progress, "step")
        if self.bar.n == 0 and step > 1:
            self.bar.n = step - 1  # resumed
        self.bar.update(step - self.bar.n)
        loss, validation = getattr(progress, "loss"), getattr(progress, "validation")
        postfix = {"loss": f"{loss:.2e}"}
        if validation is not None:
            postfix["val"] = f"{validation:.2e}"
        self.bar.set_postfix(postfix, refresh=False)
