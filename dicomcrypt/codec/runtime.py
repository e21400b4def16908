"""Running a loaded model: encode to latent bytes, decode them exactly, in tiles.

:class:`LoadedModel` is what :func:`dicomcrypt.codec.registry.load_model` returns: the float
encoder for senders, the fixed-point decoder (:mod:`dicomcrypt.codec.fixed_point`) that gives the
same bits on every machine for both sides, and :meth:`LoadedModel.check_identity` against the model
an envelope names. Large images run in overlapping tiles (:mod:`dicomcrypt.codec.tiling`). torch is
imported only inside the methods that run the float network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dicomcrypt.codec.latent import Latent, latent_from_bytes, latent_to_bytes
from dicomcrypt.codec.tiling import HALO, TILE, pad_to_multiple, run_tiled
from dicomcrypt.errors import ModelError, ModelMismatchError, PayloadFormatError

if TYPE_CHECKING:
    from dicomcrypt.codec.arch import Architecture
    from dicomcrypt.codec.arch.base import BaseAutoencoder
    from dicomcrypt.codec.fixed_point import FixedPointDecoder


@dataclass(frozen=True)
class ModelInfo:
    """What identifies a model in an envelope, and what it expects."""

    model_id: str
    sha256: bytes
    channels: int
    architecture: Architecture
    weights_path: Path
    metadata: dict[str, Any]

    @property
    def arch(self) -> str:
        """The architecture's name, as the metadata and weights record it."""
        return self.architecture.name

    @property
    def factor(self) -> int:
        """Downsampling factor: the latent is ``ceil(H / factor) x ceil(W / factor)``."""
        return self.architecture.factor

    @property
    def latent_channels(self) -> int:
        return self.architecture.latent_channels


class LoadedModel:
    """A verified model: float encoder for senders, exact fixed-point decoder for both sides."""

    def __init__(self, info: ModelInfo, network: BaseAutoencoder, fixed: FixedPointDecoder) -> None:
        self.info = info
        self.network = network.eval()
        self.fixed = fixed

    def __repr__(self) -> str:
        return f"<LoadedModel {self.info.model_id} sha256={self.info.sha256.hex()[:16]}...>"

    def check_identity(self, model_id: str, sha256: bytes) -> None:
        """Raise :class:`ModelMismatchError` unless this is the model an envelope names."""
        if sha256 != self.info.sha256:
            raise ModelMismatchError(
                f"the data needs model {model_id} sha256 {sha256.hex()}, but the loaded model is "
                f"{self.info.model_id} sha256 {self.info.sha256.hex()}"
            )

    def encode(self, image: np.ndarray, latent_format: str = "u8", *, tile: int = TILE, levels: int = 256) -> bytes:
        """``(F, H, W, C)`` floats in [0, 1] -> serialised quantised latent.

        Frames are encoded one at a time, in tiles, padded by edge replication to a multiple of
        the model's downsampling factor; the original size travels in the latent header.
        ``levels``: codes used by the u8 latent (256; :attr:`lossless_levels` for the lossless mode).
        """
        latents = self.encode_latent(image, tile=tile)
        return latent_to_bytes(
            latents, latent_format=latent_format, factor=self.info.factor,
            original_size=(image.shape[1], image.shape[2]), tile=tile, levels=levels,
        )

    @property
    def lossless_levels(self) -> int:
        """Latent levels for the lossless mode, from the model's metadata (the architecture's
        default, 256, for older models).

        In lossless mode the residual carries the detail and costs about as much as JPEG-LS of the
        pixels whatever the prediction, so a coarse latent makes the smaller payload.
        """
        default = self.info.architecture.lossless_levels
        value = self.info.metadata.get("lossless_latent_levels", default)
        return value if isinstance(value, int) and 2 <= value <= 256 else default

    def encode_latent(self, image: np.ndarray, *, tile: int = TILE) -> np.ndarray:
        """The unquantised float32 latent ``(F, ceil(H/factor), ceil(W/factor), latent channels)``."""
        import torch

        image = self._check_image(image)
        factor = self.info.factor
        if tile % factor or tile <= 0:
            raise ValueError(f"tile must be a positive multiple of {factor}")
        frames, height, width, _ = image.shape
        out = np.empty((frames, -(-height // factor), -(-width // factor), self.info.latent_channels), np.float32)
        encoder = self.network.g_a

        def encode_region(region: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)[None]
            y = encoder(x.contiguous(memory_format=torch.channels_last))
            return y[0].permute(1, 2, 0).numpy()

        with torch.inference_mode():
            for index in range(frames):
                padded = pad_to_multiple(image[index], factor)
                run_tiled(padded, encode_region, tile=tile, halo=HALO, down=factor, out=out[index])
        return out

    def decode(self, latent: bytes, *, tile: int = TILE) -> np.ndarray:
        """Serialised latent -> ``(F, H, W, C)`` float64 in [0, 1], bit-identical everywhere.

        Runs the fixed-point decoder. The result does not depend on ``tile`` (nor on the tile
        size the sender recorded in the header): tiles overlap by more than the receptive field.
        """
        return self._decode(latent, self.fixed.session(), tile, np.float64)

    def decode_float(self, latent: bytes, *, tile: int = TILE) -> np.ndarray:
        """The float32 reference decoder (not reproducible across machines): for evaluation."""
        import torch

        decoder = self.network.g_s

        def decode_region(region: np.ndarray) -> np.ndarray:
            y = torch.from_numpy(np.ascontiguousarray(region, dtype=np.float32)).permute(2, 0, 1)[None]
            x = decoder(y.contiguous(memory_format=torch.channels_last)).clamp_(0.0, 1.0)
            return x[0].permute(1, 2, 0).numpy()

        with torch.inference_mode():
            return self._decode(latent, decode_region, tile, np.float64)

    def _decode(self, latent: bytes, fn: Any, tile: int, dtype: type) -> np.ndarray:
        parsed = latent_from_bytes(latent)
        self._check_latent(parsed)
        factor = self.info.factor
        if tile % factor or tile <= 0:
            raise ValueError(f"tile must be a positive multiple of {factor}")
        frames = parsed.values.shape[0]
        height, width = parsed.original_size
        out: np.ndarray = np.empty((frames, height, width, self.info.channels), dtype=dtype)
        for index in range(frames):
            run_tiled(parsed.values[index], fn, tile=tile // factor, halo=HALO // factor, up=factor, out=out[index])
        return out

    def _check_image(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim != 4 or 0 in image.shape:
            found = getattr(image, "shape", type(image))
            raise ValueError(f"image must be a non-empty (F, H, W, C) array, not {found}")
        if image.shape[3] != self.info.channels:
            raise ModelError(
                f"model {self.info.model_id} takes {self.info.channels}-channel images, not {image.shape[3]}"
            )
        image = np.asarray(image, dtype=np.float32)
        if not np.all(np.isfinite(image)):
            raise ValueError("image has non-finite values")
        return np.clip(image, 0.0, 1.0)

    def _check_latent(self, parsed: Latent) -> None:
        if parsed.factor != self.info.factor or parsed.values.shape[3] != self.info.latent_channels:
            raise PayloadFormatError(
                f"latent has {parsed.values.shape[3]} channels at factor {parsed.factor}; model "
                f"{self.info.model_id} needs {self.info.latent_channels} at factor {self.info.factor}"
            )


@dataclass(frozen=True)
class TorchRuntime:
    """What a timing depends on: the torch version and its intra-op thread count."""

    version: str
    threads: int


def torch_runtime() -> TorchRuntime:
    """The running torch's version and thread count, for reports such as ``bench`` (imports
    torch; code outside the codec asks here instead of importing torch itself)."""
    import torch

    return TorchRuntime(version=str(torch.__version__), threads=torch.get_num_threads())
