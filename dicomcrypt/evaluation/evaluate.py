"""Per-image evaluation: the lossy reconstruction, then the paper's Table 6 denoising experiment.

The clean reconstruction follows the pipeline's lossy path step by step -- normalise, encode,
quantised latent bytes, sealed in a real envelope (AES-256-GCM, bound to the instance's UIDs),
opened again, the exact fixed-point decoder, back to stored integers, padding put back from its
mask -- so the figures are what a receiver gets. The steps are spelled out here rather than
calling ``encrypt_instance`` because the figure needs the intermediate values (latent,
ciphertext) and because a multi-frame object is evaluated on chosen frames only.

Conventions (also written into every report):

- Reconstruction quality is measured on the stored integer pixels: PSNR on the image's bit depth
  (peak 2**BitsStored - 1) and PSNR over the image's own range (max - min), SSIM over that range,
  MSE in stored units; plus SSIM and MSE on the [0, 1] scale the codec works on (the paper's
  scale: its MSE 0.0019 is on [0, 1]); for CT, the mean absolute error in the brain window.
- The noise experiment runs on the [0, 1] scale: the clean normalised image is the reference,
  noise (:mod:`dicomcrypt.noise`) is added before encoding, and "decoded" is the decoder's output
  for the noisy image's latent (encryption is exact, so it is left out of this loop).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dicomcrypt import dicom, quality
from dicomcrypt.codec import normalise
from dicomcrypt.crypto import Key
from dicomcrypt.envelope import Mode, instance_binding, open_envelope, read_header, seal
from dicomcrypt.errors import InvalidInputError, UnsupportedImageError
from dicomcrypt.files import read_dicom
from dicomcrypt.noise import NOISE_KINDS, add_noise

FRAME_CHOICES = ("middle", "all")
"""Which frames of a multi-frame object are evaluated: the middle one (default) or every one."""


@dataclass(frozen=True)
class Reconstruction:
    """Original against the lossy reconstruction."""

    psnr_bits_db: float
    psnr_range_db: float
    ssim: float
    mse: float
    value_range: float
    ssim_unit: float
    mse_unit: float
    window_mae_hu: float | None


@dataclass(frozen=True)
class NoiseResult:
    """One row of the paper's Table 6 for one image, on the [0, 1] scale."""

    kind: str
    ssim_noisy: float
    ssim_decoded: float
    mse_noisy: float
    mse_decoded: float

    @property
    def decoded_closer(self) -> bool:
        """The decoder denoised: its output is closer to the original on both measures."""
        return self.ssim_decoded > self.ssim_noisy and self.mse_decoded < self.mse_noisy


@dataclass(frozen=True)
class ImageResult:
    """Everything measured on one image."""

    file: str
    modality: str
    rows: int
    columns: int
    samples: int
    bits_stored: int
    frames_total: int
    frames_evaluated: tuple[int, ...]
    model_id: str
    raw_bytes: int
    latent_bytes: int
    envelope_bytes: int
    encode_s: float
    decode_s: float
    reconstruction: Reconstruction
    noise: tuple[NoiseResult, ...]


@dataclass(frozen=True)
class Panels:
    """The arrays of the paper's Figure 6, for the first evaluated frame."""

    original: np.ndarray  # (H, W, C) on [0, 1]
    latent: np.ndarray | None  # (h, w, c) as dequantised before encryption
    ciphertext: bytes
    decrypted_latent: np.ndarray | None  # (h, w, c) parsed from the decrypted bytes
    reconstruction: np.ndarray  # (H, W, C) on [0, 1]


def select_frames(count: int, frames: str) -> list[int]:
    """Indices of the frames to evaluate."""
    if frames not in FRAME_CHOICES:
        raise ValueError(f"frames must be one of {', '.join(FRAME_CHOICES)}, not {frames!r}")
    return list(range(count)) if frames == "all" else [count // 2]


@dataclass(frozen=True)
class Prepared:
    """An image read and checked for the codec: the chosen frames and the model to use."""

    ds: Any  # pydicom Dataset
    fmt: dicom.PixelFormat
    chosen: list[int]
    original: np.ndarray  # (len(chosen), H, W, C) stored integers
    codec: Any  # LoadedModel


def prepare(path: Path, name: str, *, model_id: str | None, frames: str = "middle") -> Prepared:
    """Read ``path`` and pick its frames and model; :class:`InvalidInputError` subclasses say why
    an image cannot go through the autoencoder (not DICOM, no pixels, palette/float/1-bit, or a
    channel count the model does not take)."""
    from dicomcrypt.codec.registry import load_model

    ds = read_dicom(path)
    if not dicom.has_pixel_data(ds):
        raise InvalidInputError(f"{name}: no Pixel Data (not an image)")
    all_frames, fmt = dicom.read_frames(ds)
    if not fmt.model_ready:
        raise UnsupportedImageError(
            f"{name}: the autoencoder does not take these pixels (palette, float, 1-bit or >16-bit); "
            "dicomcrypt sends them in standard mode"
        )
    chosen = select_frames(fmt.frames, frames)
    codec = load_model(model_id, channels=fmt.samples_per_pixel)
    if codec.info.channels != fmt.samples_per_pixel:
        raise UnsupportedImageError(
            f"{name}: {fmt.samples_per_pixel}-sample image, model {codec.info.model_id} takes {codec.info.channels}"
        )
    return Prepared(ds, fmt, chosen, all_frames[chosen], codec)


def reconstruct(codec: Any, latent: bytes, norm: normalise.Normalisation, original: np.ndarray) -> np.ndarray:
    """What the lossy mode's receiver restores: decoder output as stored integers, padding put back."""
    restored = normalise.from_unit(codec.decode(latent), norm, original.dtype)
    mask = normalise.padding_mask(original, norm)
    if mask is not None:
        restored[mask] = norm.padding
    return restored


def evaluate_file(
    path: Path,
    name: str,
    *,
    model_id: str | None,
    key: Key,
    seed: int = 0,
    frames: str = "middle",
) -> tuple[ImageResult, Panels]:
    """Evaluate one DICOM image; raises a :class:`DicomCryptError` naming the file otherwise."""
    image = prepare(path, name, model_id=model_id, frames=frames)
    ds, fmt, chosen, original, codec = image.ds, image.fmt, image.chosen, image.original, image.codec

    norm = normalise.fit(original, fmt.padding_value)
    unit = normalise.to_unit(original, norm)
    started = time.perf_counter()
    latent_bytes = codec.encode(unit)
    encode_s = time.perf_counter() - started

    binding = instance_binding(*dicom.uids(ds))
    envelope = seal(latent_bytes, key=key, mode=Mode.LOSSY, model_id=codec.info.model_id,
                    model_sha256=codec.info.sha256, binding=binding)
    _, opened = open_envelope(envelope, keys=key, binding=binding)

    started = time.perf_counter()
    restored = reconstruct(codec, opened, norm, original)
    decode_s = time.perf_counter() - started

    rescale = None
    if str(ds.get("Modality", "")) == "CT":
        rescale = (float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
    stored = quality.compare(original, restored, rescale=rescale, bits_stored=fmt.bits_stored)
    restored_unit = normalise.to_unit(restored, norm)
    on_unit = quality.compare(unit, restored_unit)
    assert stored.psnr_bits_db is not None  # compare() gives it whenever bits_stored is given
    reconstruction = Reconstruction(
        psnr_bits_db=float(stored.psnr_bits_db),
        psnr_range_db=stored.psnr_db,
        ssim=stored.ssim,
        mse=stored.mse,
        value_range=stored.value_range,
        ssim_unit=on_unit.ssim,
        mse_unit=on_unit.mse,
        window_mae_hu=stored.window_mae_hu,
    )

    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    noise = tuple(_noise_row(codec, unit, kind, rng) for kind in NOISE_KINDS)

    header = read_header(envelope)
    result = ImageResult(
        file=name,
        modality=str(ds.get("Modality", "")),
        rows=fmt.rows,
        columns=fmt.columns,
        samples=fmt.samples_per_pixel,
        bits_stored=fmt.bits_stored,
        frames_total=fmt.frames,
        frames_evaluated=tuple(chosen),
        model_id=codec.info.model_id,
        raw_bytes=int(original.nbytes),
        latent_bytes=len(latent_bytes),
        envelope_bytes=len(envelope),
        encode_s=encode_s,
        decode_s=decode_s,
        reconstruction=reconstruction,
        noise=noise,
    )
    panels = Panels(
        original=unit[0],
        latent=_latent_image(latent_bytes),
        ciphertext=envelope[len(envelope) - header.ciphertext_length:],
        decrypted_latent=_latent_image(opened),
        reconstruction=restored_unit[0],
    )
    return result, panels


def _noise_row(codec: Any, unit: np.ndarray, kind: str, rng: np.random.Generator) -> NoiseResult:
    noisy = add_noise(unit, kind, rng)
    decoded = codec.decode(codec.encode(noisy))
    before = quality.compare(unit, noisy)
    after = quality.compare(unit, decoded)
    return NoiseResult(kind, before.ssim, after.ssim, before.mse, after.mse)


def _latent_image(blob: bytes) -> np.ndarray | None:
    """The first frame of a serialised latent as ``(h, w, c)`` values, or None if the model uses
    a latent container this version cannot parse (the figure then shows its bytes instead)."""
    from dicomcrypt.codec.latent import latent_from_bytes
    from dicomcrypt.errors import PayloadFormatError

    try:
        return latent_from_bytes(blob).values[0]
    except PayloadFormatError:
        return None
