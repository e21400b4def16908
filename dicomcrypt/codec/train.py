"""Training a codec model: seeded, resumable, with a validation curve and an exact-decoder export.

Behind ``dicomcrypt train`` and ``scripts/train_default_models.py``. One run::

    images --split by study--> train / validation
    loop: random crops (rotations, flips), a share made noisy (dicomcrypt.noise) with the clean
          crop as target -- the paper's decoder "also denoises" -- MSE, Adam, one-cycle schedule;
          checkpoint every N steps (model, optimiser, schedule, RNG states, loss history)
    export: calibrate the fixed-point decoder on quantised latents, write weights + JSON + card
    measure: PSNR / SSIM of the exact decoder on the validation images; loss curve PNG

Repeatable: every random draw comes from generators seeded by ``TrainConfig.seed`` whose state
is in the checkpoint, so a resumed run continues the same sequence of batches. (Bit-identical
weights across CPUs are not promised: float training is not; the exported weights' SHA-256 is
what identifies a model.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dicomcrypt.codec import fixed_point
from dicomcrypt.codec.arch import ARCHITECTURES, DEFAULT_ARCHITECTURE, architecture
from dicomcrypt.codec.arch.base import BaseAutoencoder
from dicomcrypt.codec.export import update_metadata, write_card, write_model, write_model_file
from dicomcrypt.codec.latent import latent_from_bytes, latent_to_bytes
from dicomcrypt.codec.runtime import LoadedModel
from dicomcrypt.codec.tiling import TILE
from dicomcrypt.codec.train_data import TrainingImage, sampling_weights
from dicomcrypt.errors import TrainingError

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1

# Settings by starting point (docs/models.md, "Haar initialisation", has the trial runs behind them).
# Haar: 20 % noisy crops weighted 0.03 (at weight 1 noisy crops dominate the loss and the model
# learns to blur), salt & pepper drawn twice as often: the one noise Haar alone does not remove.
RECIPES: dict[str, dict[str, Any]] = {
    "haar": {"steps": 1000, "learning_rate": 3e-4, "noise_share": 0.2, "noise_loss_weight": 0.03,
             "noise_kinds": ("salt_and_pepper", "salt_and_pepper", "speckle", "poisson", "gaussian")},
    "random": {"steps": 2000, "learning_rate": 3e-3, "noise_share": 0.1, "noise_loss_weight": 1.0},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the weights, apart from the data (recorded in the model JSON)."""

    arch: str = DEFAULT_ARCHITECTURE
    channels: int = 1
    width: int = 32  # for architectures whose width is not fixed (ps-ae)
    init: str | None = None  # None: the architecture's default_init
    steps: int = 2000
    seed: int = 20221130
    learning_rate: float = 3e-3
    crop_sizes: tuple[int, ...] = (64, 80, 96, 112, 128)
    pixels_per_batch: int = 8 * 96 * 96
    noise_share: float = 0.1  # share of crops given one of the four noise types (input only)
    # which of dicomcrypt.noise.NOISE_KINDS those crops get (uniformly); all four by default
    noise_kinds: tuple[str, ...] = ("salt_and_pepper", "speckle", "poisson", "gaussian")
    # weight of a noisy crop's MSE against a clean one's (1: plain mean). A noisy crop's error is
    # 10-100x a clean one's, so at 1 a 10 % share dominates the loss and the model learns to blur.
    noise_loss_weight: float = 1.0
    validate_every: int = 100
    checkpoint_every: int = 100

    @classmethod
    def recipe(cls, arch: str = DEFAULT_ARCHITECTURE, init: str | None = None, **overrides: Any) -> TrainConfig:
        """A config with the settings that suit the starting point, then ``overrides``.

        A Haar start already holds the detail, so it is refined gently (low rate, noisy crops
        down-weighted); a random start needs the higher rate. ``dicomcrypt train`` and
        ``scripts/train_default_models.py`` both start here, so a site's model is trained the
        way the shipped ``ps-grey@2`` was.
        """
        start = resolved_init(cls(arch=arch, init=init))
        return cls(arch=arch, init=init, **{**RECIPES[start], **overrides})

    def fingerprint(self, images: list[TrainingImage]) -> str:
        """Identifies config + data: a checkpoint resumes only the run that wrote it."""
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode())
        for image in images:
            digest.update(f"{image.name}|{image.group}|{image.frames.shape}".encode())
        return digest.hexdigest()


@dataclass
class History:
    """Loss curve: (step, training loss EMA) and (step, validation MSE)."""

    train: list[tuple[int, float]] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    """What the caller's progress display gets after each step."""

    step: int
    steps: int
    loss: float
    validation: float | None
    seconds: float


def resolved_init(config: TrainConfig) -> str:
    """The initialisation a run uses: ``config.init``, or the architecture's default."""
    if config.arch not in ARCHITECTURES:
        raise TrainingError(f"unknown architecture {config.arch!r} (known: {', '.join(ARCHITECTURES)})")
    record = architecture(config.arch)
    init = config.init or record.default_init
    if init not in record.inits:
        offered = "; ".join(f"{name}: {', '.join(architecture(name).inits)}" for name in ARCHITECTURES)
        raise TrainingError(f"init {init!r} is not available for {config.arch} ({offered})")
    return init


def build_network(config: TrainConfig) -> BaseAutoencoder:
    """A fresh network (after ``torch.manual_seed``) from the architecture's builder, e.g. the
    3-band Haar code that ``ps-ae`` starts from (:func:`dicomcrypt.codec.arch.ps.haar_init_`)."""
    return architecture(config.arch).build(config.channels, resolved_init(config), config.width)


def set_threads(count: int) -> None:
    """CPU threads for training and measuring (torch's own choice otherwise); callers outside the
    codec set it here rather than importing torch."""
    torch.set_num_threads(count)


def pick_device() -> torch.device:
    """A GPU when there is one (CUDA, then Apple MPS), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def train(
    config: TrainConfig,
    train_images: list[TrainingImage],
    validation_images: list[TrainingImage],
    workdir: Path,
    *,
    on_step: Callable[[Progress], None] | None = None,
    device: torch.device | None = None,
) -> tuple[BaseAutoencoder, History, dict[str, Any]]:
    """Train (or resume from ``workdir/checkpoint.pt``) and return the CPU network, history, summary."""
    if not train_images:
        raise TrainingError("no training images (check the folder, --modality and the channel count)")
    device = device or pick_device()
    workdir.mkdir(parents=True, exist_ok=True)
    fingerprint = config.fingerprint(train_images + validation_images)
    torch.manual_seed(config.seed)
    network = build_network(config).to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    if config.steps >= 20:
        schedule: Any = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=config.learning_rate, total_steps=config.steps, pct_start=max(0.05, 3 / config.steps)
        )
    else:  # smoke runs: one-cycle needs room for its warm-up
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _step: 1.0)
    rng = np.random.default_rng(config.seed)
    history = History()
    start_step, seconds_before, running = 0, 0.0, None
    checkpoint_path = workdir / CHECKPOINT
    if checkpoint_path.is_file():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if saved.get("format") != CHECKPOINT_FORMAT or saved.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"{checkpoint_path} belongs to another run (different data or settings); "
                "remove it or use another --out folder"
            )
        network.load_state_dict(saved["network"])
        optimiser.load_state_dict(saved["optimiser"])
        schedule.load_state_dict(saved["schedule"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        history = History([tuple(x) for x in saved["history"]["train"]],
                          [tuple(x) for x in saved["history"]["validation"]])
        start_step, seconds_before, running = saved["step"], saved["seconds"], saved["running"]
    weights = sampling_weights(train_images)
    validation_batches = _validation_batches(validation_images, config)
    started = time.perf_counter()
    network.train()
    for step in range(start_step, config.steps):
        inputs, targets = sample_batch(train_images, weights, rng, config)
        inputs = inputs.to(device).contiguous(memory_format=torch.channels_last)
        targets = targets.to(device).contiguous(memory_format=torch.channels_last)
        loss = _loss(network(inputs), targets, inputs, config.noise_loss_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        value = float(loss.detach())
        running = value if running is None else 0.95 * running + 0.05 * value
        done = step + 1
        validation = None
        if done % config.validate_every == 0 or done == config.steps:
            history.train.append((done, running))
            if validation_batches:
                validation = validation_mse(network, validation_batches, device)
                history.validation.append((done, validation))
        seconds = seconds_before + time.perf_counter() - started
        if done % config.checkpoint_every == 0 or done == config.steps:
            _save_checkpoint(checkpoint_path, fingerprint, network=network, optimiser=optimiser, schedule=schedule,
                             rng=rng, history=history, step=done, seconds=seconds, running=running)
        if on_step is not None:
            on_step(Progress(done, config.steps, running, validation, seconds))
    network = network.cpu().eval()
    seconds = seconds_before + time.perf_counter() - started
    summary = {
        "config": {**dataclasses.asdict(config), "init": resolved_init(config)},
        "steps": config.steps,
        "seconds": round(seconds, 1),
        "device": str(device),
        "final_train_mse_ema": running,
        "final_validation_mse": history.validation[-1][1] if history.validation else None,
        "train_files": sorted({im.name for im in train_images}),
        "validation_files": sorted({im.name for im in validation_images}),
        "train_groups": len({im.group for im in train_images}),
        "validation_groups": len({im.group for im in validation_images}),
    }
    return network, history, summary


def _loss(output: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor, noise_weight: float) -> torch.Tensor:
    """MSE, with the crops that were given noise (input differs from target) weighted ``noise_weight``."""
    if noise_weight == 1.0:
        return torch.nn.functional.mse_loss(output, targets)
    per_crop = ((output - targets) ** 2).mean(dim=(1, 2, 3))
    noisy = (inputs != targets).flatten(1).any(dim=1)
    weights = torch.where(noisy, torch.full_like(per_crop, noise_weight), torch.ones_like(per_crop))
    return (weights * per_crop).sum() / weights.sum()


def sample_batch(
    images: list[TrainingImage], weights: np.ndarray, rng: np.random.Generator, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random square crops (one size per batch), rotated and flipped; a share of inputs made noisy."""
    from dicomcrypt.noise import add_noise

    size = int(rng.choice(config.crop_sizes))
    count = max(4, config.pixels_per_batch // (size * size))
    targets = np.empty((count, config.channels, size, size), dtype=np.float32)
    inputs = np.empty_like(targets)
    for index in range(count):
        image = images[rng.choice(len(images), p=weights)]
        frame = image.frames[rng.integers(image.frames.shape[0])]
        height, width = frame.shape[:2]
        if height < size or width < size:
            frame = np.pad(frame, ((0, max(0, size - height)), (0, max(0, size - width)), (0, 0)), mode="edge")
            height, width = frame.shape[:2]
        y, x = rng.integers(height - size + 1), rng.integers(width - size + 1)
        crop = np.rot90(frame[y : y + size, x : x + size], k=int(rng.integers(4)))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.ascontiguousarray(crop.transpose(2, 0, 1))
        targets[index] = crop
        if rng.random() < config.noise_share:
            crop = add_noise(crop, config.noise_kinds[int(rng.integers(len(config.noise_kinds)))], rng)
        inputs[index] = crop
    return torch.from_numpy(inputs), torch.from_numpy(targets)


@torch.inference_mode()
def validation_mse(network: BaseAutoencoder, batches: list[torch.Tensor], device: torch.device) -> float:
    """Mean MSE of the float network over the fixed validation crops (clean inputs)."""
    was_training = network.training
    network.eval()
    total, count = 0.0, 0
    for batch in batches:
        x = batch.to(device)
        total += float(torch.nn.functional.mse_loss(network(x).clamp(0, 1), x, reduction="sum"))
        count += x.numel()
    network.train(was_training)
    return total / max(1, count)


def _validation_batches(images: list[TrainingImage], config: TrainConfig) -> list[torch.Tensor]:
    """Up to 256x256 centre crops of each validation frame (sides a multiple of the downsampling
    factor): the same every time."""
    factor = architecture(config.arch).factor
    batches = []
    for image in images:
        for frame in image.frames[:2]:
            height, width = min(256, frame.shape[0]) // factor * factor, min(256, frame.shape[1]) // factor * factor
            top, left = (frame.shape[0] - height) // 2, (frame.shape[1] - width) // 2
            crop = frame[top : top + height, left : left + width]
            batches.append(torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None])
    return batches


def _save_checkpoint(path: Path, fingerprint: str, *, network: torch.nn.Module, optimiser: Any, schedule: Any,
                     rng: np.random.Generator, history: History, step: int, seconds: float,
                     running: float | None) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "network": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "optimiser": optimiser.state_dict(),
        "schedule": schedule.state_dict(),
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": {"train": history.train, "validation": history.validation},
        "step": step,
        "seconds": seconds,
        "running": running,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_model_file(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------------
# Export and measurement


def export(
    network: BaseAutoencoder,
    images: list[TrainingImage],
    folder: Path,
    *,
    stem: str,
    model_id: str,
    metadata: dict[str, Any],
    seed: int = 20221130,
) -> Path:
    """Calibrate the exact decoder on quantised latents of ``images`` and write the model files."""
    peaks = fixed_point.calibrate(network.g_s, calibration_latents(network, images, seed))
    state = fixed_point.export_state(network.g_s, peaks)
    meta = {**metadata, "calibration_peaks": peaks}
    return write_model(network, state, folder, stem, model_id, metadata=meta, card="(evaluation pending)\n")


@torch.inference_mode()
def calibration_latents(network: BaseAutoencoder, images: list[TrainingImage], seed: int) -> list[torch.Tensor]:
    """Latents as the receiver sees them (u8-quantised): whole frames up to 512 px and random crops."""
    factor = architecture(network.arch).factor
    inputs = []
    for image in images:
        for frame in image.frames[:2]:
            height, width = min(512, frame.shape[0]) // factor * factor, min(512, frame.shape[1]) // factor * factor
            inputs.append(torch.from_numpy(np.ascontiguousarray(frame[:height, :width].transpose(2, 0, 1)))[None])
    config = TrainConfig(channels=network.in_channels, noise_share=0.0)
    rng = np.random.default_rng(seed + 1)
    uniform = np.full(len(images), 1 / len(images))
    inputs += [sample_batch(images, uniform, rng, config)[0] for _ in range(8)]
    out = []
    for x in inputs:
        y = network.g_a(x).permute(0, 2, 3, 1).numpy()
        blob = latent_to_bytes(y, factor=factor, original_size=(factor * y.shape[1], factor * y.shape[2]), tile=TILE)
        out.append(torch.from_numpy(latent_from_bytes(blob).values).permute(0, 3, 1, 2))
    return out


def measure(model: LoadedModel, images: list[TrainingImage]) -> list[dict[str, Any]]:
    """PSNR (over the normalised range, i.e. the image's range without padding) and SSIM of the
    exact decoder's lossy output, per image, plus latent size and timings."""
    from skimage.metrics import structural_similarity

    from dicomcrypt.quality import psnr_db

    rows = []
    for image in images:
        frames = image.frames[:2]
        started = time.perf_counter()
        blob = model.encode(frames)
        encoded = time.perf_counter()
        decoded = model.decode(blob)
        finished = time.perf_counter()
        mse = float(np.mean((decoded - frames) ** 2))
        ssim = float(np.mean([
            structural_similarity(a.astype(np.float64), b, data_range=1.0, channel_axis=-1)
            for a, b in zip(frames, decoded)
        ])) if min(frames.shape[1:3]) >= 7 else float("nan")
        rows.append({
            "file": image.name, "size": f"{frames.shape[1]}x{frames.shape[2]}", "frames": int(frames.shape[0]),
            "psnr_db": psnr_db(mse, 1.0), "ssim": ssim,
            "latent_bytes": len(blob), "encode_s": encoded - started, "decode_s": finished - encoded,
        })
    return rows


def plot_loss_curve(history: History, path: Path, title: str) -> None:
    """The paper's Figure 5: training and validation loss against steps (PNG, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    if history.train:
        axis.plot(*zip(*history.train), label="training MSE (EMA)")
    if history.validation:
        axis.plot(*zip(*history.validation), label="validation MSE", marker="o", markersize=3)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("MSE on [0, 1]")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_model_file(path, buffer.getvalue())


LOSSLESS_LEVEL_CHOICES = (256, 64, 16, 4, 2)


def choose_lossless_levels(model: LoadedModel, paths: Iterable[Path], *, files: int = 6) -> tuple[int, dict[int, int]]:
    """The latent levels that make the smallest lossless payload over the first frame of (up to
    ``files`` of) ``paths`` -- training files: the choice is part of training -- and the byte totals.

    Each candidate is measured as the pipeline codes it: the latent at that many levels, plus the
    pixels coded exactly against the decoder's prediction or on their own, whichever is smaller
    (:func:`dicomcrypt.codec.residual.encode`). When the pixels alone win, the smallest latent wins.
    """
    from dicomcrypt.codec import normalise, residual
    from dicomcrypt.codec.train_data import Skipped, read_image

    totals = dict.fromkeys(LOSSLESS_LEVEL_CHOICES, 0)
    used = 0
    for path in paths:
        read = read_image(path)
        if isinstance(read, Skipped) or read[1].shape[-1] != model.info.channels or read[1].dtype.kind not in "iu":
            continue
        _ds, pixels, padding = read
        pixels = pixels[:1]
        norm = normalise.fit(pixels, padding)
        mask = normalise.padding_mask(pixels, norm)
        for levels in LOSSLESS_LEVEL_CHOICES:
            blob = model.encode(normalise.to_unit(pixels, norm), levels=levels)
            prediction = normalise.from_unit(model.decode(blob), norm, pixels.dtype)
            if mask is not None:
                prediction[mask] = norm.padding
            totals[levels] += len(blob) + len(residual.encode(pixels, prediction)[0])
        used += 1
        if used == files:
            break
    return min(totals, key=lambda levels: totals[levels]), totals


def finish_model(meta_path: Path, rows: list[dict[str, Any]], **fields: Any) -> None:
    """Record the validation measurements (and any other ``fields``, e.g. ``evaluation``: rows
    measured on held-out files) in the model's JSON and write its card."""
    meta = update_metadata(meta_path, validation=rows, **fields)
    write_card(meta_path, meta, model_card(meta, rows))


def model_card(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A model's card: what it is, what it was trained on, how good it is on validation (and on
    held-out files when the metadata records an ``evaluation``)."""
    training = meta.get("training", {})
    config = training.get("config", {})
    levels = meta.get("lossless_latent_levels")
    lines = [
        f"# Model card: `{meta['model_id']}`",
        "",
        f"Architecture `{meta['arch']}` ({architecture(meta['arch']).summary}), {meta['channels']} channel(s); "
        f"weights `{meta['weights']}`, SHA-256 `{meta['sha256']}` (checked at every load). "
        f"Trained by {training.get('trained_by', '`dicomcrypt train`')}.",
        "",
        "## Training",
        "",
        f"- {config.get('steps')} steps, seed {config.get('seed')}, "
        f"{training.get('seconds')} s on {training.get('device')}; "
        f"starting from the `{config.get('init')}` initialisation; "
        f"Adam, one-cycle schedule peaking at {config.get('learning_rate')}; random crops of "
        f"{', '.join(str(c) for c in config.get('crop_sizes', []))} px; {config.get('noise_share', 0) * 100:.0f} % of "
        f"crops given {_noise_words(config)} of `dicomcrypt.noise` (clean target).",
        f"- Split by study: {training.get('train_groups')} studies for training "
        f"({len(training.get('train_files', []))} files), {training.get('validation_groups')} for validation "
        f"({len(training.get('validation_files', []))} files); {training.get('skipped', 0)} files skipped.",
    ]
    if training.get("held_out"):
        lines.append(f"- Held out, never trained on: {training['held_out']}.")
    lines += [
        f"- Final training MSE (EMA) {training.get('final_train_mse_ema') or float('nan'):.3e}, validation MSE "
        f"{training.get('final_validation_mse') or float('nan'):.3e} (float network, [0, 1] scale). "
        f"Curve: `{training.get('loss_curve', 'loss.png')}`.",
    ]
    if levels is not None:
        lines.append(f"- Lossless-mode latent: {levels} levels, the smallest lossless payload over training files.")
    lines += [
        "",
        "## Validation quality (lossy mode, exact decoder, 8-bit latent)",
        "",
        "PSNR over each image's own value range with padding left out (the [0, 1] range the codec works on); "
        "SSIM with the same range.",
        "",
        "| file | size | PSNR | SSIM | latent bytes | encode | decode |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['file']} | {r['size']} x{r['frames']} | {r['psnr_db']:.2f} dB | {r['ssim']:.4f} "
                     f"| {r['latent_bytes']:,} | {r['encode_s']:.3f} s | {r['decode_s']:.3f} s |")
    if not rows:
        lines.append("| (no validation images: one study only, or --validation-share 0) | | | | | | |")
    lines += _held_out_section(meta.get("evaluation") or [])
    lines += ["", "The lossless mode is exact with any model; this model's quality decides the lossy output and "
              "the size of the lossless residual.", ""]
    return "\n".join(lines)


def _held_out_section(rows: list[dict[str, Any]]) -> list[str]:
    """The card's table of held-out files, rows as ``dicomcrypt evaluate`` measures them."""
    if not rows:
        return []
    lines = [
        "",
        "## Held-out quality (lossy mode, through the envelope, as `dicomcrypt evaluate` measures it)",
        "",
        "On the restored stored integers: PSNR over the original's range (max - min) and over its bit depth, "
        "SSIM over the range; for CT the mean absolute error in the brain window (C40/W100). Payloads as "
        "`encrypt_instance` seals them.",
        "",
        "| file | size | PSNR (range) | PSNR (bits) | SSIM | CT window MAE | latent bytes "
        "| lossless / standard payload |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        window = f"{r['window_mae_hu']:.1f} HU" if r.get("window_mae_hu") is not None else "-"
        lines.append(
            f"| {r['file']} ({r['modality']}) | {r['size']} | {r['psnr_range_db']:.2f} dB | {r['psnr_bits_db']:.2f} dB "
            f"| {r['ssim']:.4f} | {window} | {r['latent_bytes']:,} "
            f"| {r['lossless_payload_bytes']:,} / {r['standard_payload_bytes']:,} |")
    return lines


def _noise_words(config: dict[str, Any]) -> str:
    """'one of the four noise types', or which were drawn how often and how their loss was weighted."""
    kinds = list(config.get("noise_kinds") or TrainConfig.noise_kinds)
    if sorted(kinds) == sorted(TrainConfig.noise_kinds):
        words = "one of the four noise types"
    else:
        counts = {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)}
        words = "noise drawn from " + ", ".join(
            kind.replace("_", " ") + (f" ({count}x as often)" if count > 1 else "") for kind, count in counts.items())
    weight = config.get("noise_loss_weight", 1.0)
    return words + (f" (their MSE weighted {weight:g} against a clean crop's)" if weight != 1.0 else "")
