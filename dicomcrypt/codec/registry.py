"""Models by id (``name@version``), weights checked by SHA-256, loaded once per process.

The model id and the SHA-256 of its weights travel in every envelope, so a receiver decodes with
exactly the weights the sender used or refuses (``ModelMismatchError`` in the pipeline). Unlike
CompressAI's zoo, the hash is checked -- before ``torch.load`` ever sees the bytes, and on the very
bytes that were hashed.

A model is a folder entry of three files: ``<stem>.json`` (metadata: id, architecture, channels,
weights file name and SHA-256, calibration summary), ``<stem>.pt`` (weights) and ``<stem>.md``
(model card). The shipped defaults live in ``dicomcrypt/models/``; a site's own model is a folder
holding ``model.json`` (or a single ``*.json``) and its weights, passed by path.

torch is imported only when a model is actually loaded: ``import dicomcrypt.codec.registry`` (and
so ``dicomcrypt inspect`` and key management) never pays for it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dicomcrypt.atomic import write_atomic
from dicomcrypt.codec.latent import Latent, latent_from_bytes, latent_to_bytes
from dicomcrypt.codec.tiling import HALO, TILE, run_tiled
from dicomcrypt.errors import ModelError, ModelMismatchError

MODEL_FILE_MODE = 0o644
"""Model weights, metadata and cards are shared read-only data, not secrets."""

if TYPE_CHECKING:
    from dicomcrypt.codec.fixed_point import FixedPointDecoder
    from dicomcrypt.codec.model import BaseAutoencoder

logger = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODELS = {1: "ps-grey@2", 3: "ps-colour@1"}  # docs/models.md: measured on the held-out images
WEIGHTS_FORMAT = 1
MODELS_ENV = "DICOMCRYPT_MODELS"
# Site models loaded by folder in this process, by id: a receiver that loaded ct-model/ to encrypt
# (or was pointed at it) finds it again when an envelope names its id.
_LOADED_BY_PATH: dict[str, Path] = {}
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*@[0-9]+$")
# architecture -> (module, class, downsampling factor, latent channels); modules imported only on load.
_ARCHES = {
    "paper-ae": ("dicomcrypt.codec.model", "PaperAutoencoder", 2, 3),
    "ps-ae": ("dicomcrypt.codec.arch_ps", "ShuffleAutoencoder", 2, 3),
}
ARCHES = tuple(_ARCHES)


def network_class(arch: str) -> type["BaseAutoencoder"]:
    """The ``nn.Module`` class of architecture ``arch`` (imports torch)."""
    import importlib

    if arch not in _ARCHES:
        raise ModelError(f"unknown architecture {arch!r} (known: {', '.join(_ARCHES)})")
    module, name, _factor, _channels = _ARCHES[arch]
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ModelInfo:
    """What identifies a model in an envelope, and what it expects."""

    model_id: str
    sha256: bytes
    channels: int
    arch: str
    factor: int
    latent_channels: int
    weights_path: Path
    metadata: dict[str, Any]


class LoadedModel:
    """A verified model: float encoder for senders, exact fixed-point decoder for both sides."""

    def __init__(self, info: ModelInfo, network: "BaseAutoencoder", fixed: "FixedPointDecoder") -> None:
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
        """Latent levels for the lossless mode, from the model's metadata (256 for older models).

        In lossless mode the residual carries the detail and costs about as much as JPEG-LS of the
        pixels whatever the prediction, so a coarse latent makes the smaller payload.
        """
        value = self.info.metadata.get("lossless_latent_levels", 256)
        return value if isinstance(value, int) and 2 <= value <= 256 else 256

    def encode_latent(self, image: np.ndarray, *, tile: int = TILE) -> np.ndarray:
        """The unquantised float32 latent ``(F, ceil(H/2), ceil(W/2), 3)``."""
        import torch

        from dicomcrypt.codec.model import pad_to_multiple

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
        out = np.empty((frames, height, width, self.info.channels), dtype=dtype)
        for index in range(frames):
            run_tiled(parsed.values[index], fn, tile=tile // factor, halo=HALO // factor, up=factor, out=out[index])
        return out

    def _check_image(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim != 4 or 0 in image.shape:
            raise ValueError(f"image must be a non-empty (F, H, W, C) array, not {getattr(image, 'shape', type(image))}")
        if image.shape[3] != self.info.channels:
            raise ModelError(
                f"model {self.info.model_id} takes {self.info.channels}-channel images, not {image.shape[3]}"
            )
        image = np.asarray(image, dtype=np.float32)
        if not np.all(np.isfinite(image)):
            raise ValueError("image has non-finite values")
        return np.clip(image, 0.0, 1.0)

    def _check_latent(self, parsed: Latent) -> None:
        from dicomcrypt.errors import PayloadFormatError

        if parsed.factor != self.info.factor or parsed.values.shape[3] != self.info.latent_channels:
            raise PayloadFormatError(
                f"latent has {parsed.values.shape[3]} channels at factor {parsed.factor}; model "
                f"{self.info.model_id} needs {self.info.latent_channels} at factor {self.info.factor}"
            )


def available_models() -> list[str]:
    """Ids of the models shipped with this build."""
    return sorted(_shipped())


def load_model(model_id: str | None = None, channels: int = 1) -> LoadedModel:
    """Load (once per process) a shipped model by id, or a site's model folder by path.

    A site model's id also resolves once its folder was loaded in this process, or when its folder
    (or a folder holding it) is listed in ``$DICOMCRYPT_MODELS`` (``os.pathsep``-separated): that
    is how a receiver decodes envelopes made with ``dicomcrypt train`` models.

    ``model_id=None`` picks the default for ``channels`` (:data:`DEFAULT_MODELS`: 1 ``ps-grey@2``, 3
    ``ps-colour@1``); with an explicit id ``channels`` is not used (``encode`` checks the image
    against the model). Raises :class:`ModelError` for unknown ids, malformed metadata and
    weights whose SHA-256 differs from the metadata's.
    """
    if model_id is None:
        if channels not in DEFAULT_MODELS:
            raise ModelError(f"no default model for {channels}-channel images")
        model_id = DEFAULT_MODELS[channels]
    path = _resolve(model_id)
    model = _load(str(path))
    if model.info.model_id not in _shipped():
        _LOADED_BY_PATH.setdefault(model.info.model_id, path)
    return model


def clear_cache() -> None:
    """Forget loaded models (tests; a site replacing its model folder in a running process)."""
    _load.cache_clear()
    _shipped.cache_clear()
    _LOADED_BY_PATH.clear()


@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, Path]:
    return _models_in(MODELS_DIR)


def _models_in(folder: Path) -> dict[str, Path]:
    """Model id -> metadata file, for the ``*.json`` files of ``folder`` that name one."""
    models: dict[str, Path] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            model_id = json.loads(path.read_text(encoding="utf-8")).get("model_id")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(model_id, str):
            models[model_id] = path
    return models


def metadata_file_in(folder: Path) -> Path:
    """A model folder's metadata: ``model.json`` (what ``dicomcrypt train`` writes), else its only ``.json``."""
    candidates = [folder / "model.json"] if (folder / "model.json").is_file() else sorted(folder.glob("*.json"))
    if len(candidates) != 1:
        raise ModelError(f"model folder {folder} must hold model.json (or exactly one .json metadata file)")
    return candidates[0]


def _resolve(model_id: str) -> Path:
    """Metadata file for an id or a path (a folder, or a metadata ``.json``)."""
    looks_like_path = os.sep in model_id or "/" in model_id or model_id.endswith(".json") or Path(model_id).is_dir()
    if looks_like_path:
        path = Path(model_id).expanduser().resolve()
        if path.is_dir():
            path = metadata_file_in(path)
        if not path.is_file():
            raise ModelError(f"model {model_id}: no such model folder or metadata file")
        return path
    if not _ID_PATTERN.match(model_id):
        raise ModelError(f"model id {model_id!r} is not of the form name@version")
    shipped = _shipped()
    if model_id in shipped:
        return shipped[model_id]
    if model_id in _LOADED_BY_PATH:
        return _LOADED_BY_PATH[model_id]
    site = _site_models()
    if model_id in site:
        return site[model_id]
    known = ", ".join(sorted(shipped) + sorted(site)) or "none"
    raise ModelError(f"unknown model {model_id} (available: {known}; a site model is found by its folder, "
                     f"or by id in the folders listed in ${MODELS_ENV})")


def _site_models() -> dict[str, Path]:
    """Site models by id: each folder in ``$DICOMCRYPT_MODELS`` is a model folder or holds some."""
    models: dict[str, Path] = {}
    for entry in filter(None, os.environ.get(MODELS_ENV, "").split(os.pathsep)):
        root = Path(entry).expanduser()
        for folder in [root, *sorted(p for p in root.glob("*") if p.is_dir())]:
            for model_id, path in _models_in(folder).items():
                models.setdefault(model_id, path)
    return models


@functools.lru_cache(maxsize=8)
def _load(meta_path: str) -> LoadedModel:
    started = time.perf_counter()
    meta = _read_metadata(Path(meta_path))
    model_id = meta["model_id"]
    weights_path = Path(meta_path).parent / meta["weights"]
    try:
        data = weights_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model {model_id}: cannot read weights {weights_path} ({exc.strerror})") from exc
    found = hashlib.sha256(data).hexdigest()
    if found != meta["sha256"]:
        raise ModelError(
            f"model {model_id}: weights file {weights_path.name} has SHA-256 {found}, expected {meta['sha256']}"
        )

    import torch

    from dicomcrypt.codec.fixed_point import FixedPointDecoder, summarise_state

    cls = network_class(meta["arch"])
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        network = cls.from_state_dict(state["float"])
    except Exception as exc:  # unpickling and shape errors: torch raises many types
        raise ModelError(f"model {model_id}: weights do not load ({type(exc).__name__}: {exc})") from exc
    if state.get("format") != WEIGHTS_FORMAT or state.get("arch") != meta["arch"]:
        raise ModelError(
            f"model {model_id}: weights format {state.get('format')!r} / arch {state.get('arch')!r} not supported"
        )
    try:
        fixed = FixedPointDecoder.from_state(state["fixed"], plan=network.g_s.PLAN)
    except (ModelError, KeyError) as exc:
        raise ModelError(f"model {model_id}: {exc}") from exc
    if network.in_channels != meta["channels"] or fixed.out_channels != meta["channels"]:
        raise ModelError(f"model {model_id}: metadata says {meta['channels']} channels, weights disagree")
    if "calibration" in meta and meta["calibration"] != summarise_state(state["fixed"]):
        raise ModelError(f"model {model_id}: calibration in metadata differs from the weights file")
    _module, _class, factor, latent_channels = _ARCHES[meta["arch"]]
    info = ModelInfo(model_id, bytes.fromhex(found), meta["channels"], meta["arch"], factor, latent_channels,
                     weights_path, meta)
    # One line per model per process: how a PACS log shows the model is not reloaded per instance.
    logger.info("loaded model %s (sha256 %s...) in %.2f s", model_id, found[:16], time.perf_counter() - started)
    return LoadedModel(info, network, fixed)


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model metadata {path} is unreadable ({exc})") from exc
    problems = []
    if not isinstance(meta, dict):
        raise ModelError(f"model metadata {path} is not a JSON object")
    if not isinstance(meta.get("model_id"), str) or not _ID_PATTERN.match(meta["model_id"]):
        problems.append("model_id missing or not name@version")
    if meta.get("arch") not in _ARCHES:
        problems.append(f"arch {meta.get('arch')!r} unknown")
    if meta.get("channels") not in (1, 3):
        problems.append("channels must be 1 or 3")
    weights = meta.get("weights")
    if not isinstance(weights, str) or Path(weights).name != weights or not weights:
        problems.append("weights must be a file name next to the metadata")
    if not isinstance(meta.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]):
        problems.append("sha256 must be 64 lowercase hex digits")
    if problems:
        raise ModelError(f"model metadata {path}: " + "; ".join(problems))
    return meta


def write_model(
    network: "BaseAutoencoder",
    fixed_state: dict,
    folder: Path,
    stem: str,
    model_id: str,
    metadata: dict[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Save weights, metadata (with their SHA-256) and an optional card; returns the metadata path.

    Used by ``scripts/train_default_models.py`` and ``dicomcrypt train``. The architecture is the
    network's own (``network.arch``). Files are written atomically (weights before metadata).
    """
    import torch

    from dicomcrypt.codec.fixed_point import summarise_state

    arch = network.arch

    if not _ID_PATTERN.match(model_id):
        raise ModelError(f"model id {model_id!r} is not of the form name@version")
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "format": WEIGHTS_FORMAT,
        "arch": arch,
        "float": {k: v.detach().cpu().float().contiguous() for k, v in network.state_dict().items()},
        "fixed": fixed_state,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    weights = folder / f"{stem}.pt"
    write_atomic(weights, buffer.getvalue(), force=True, mode=MODEL_FILE_MODE)
    meta: dict[str, Any] = {
        "model_id": model_id,
        "arch": arch,
        "channels": network.in_channels,
        "weights": weights.name,
        "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
        "card": f"{stem}.md" if card is not None else None,
        "calibration": summarise_state(fixed_state),
    }
    meta.update(metadata or {})
    meta_path = folder / f"{stem}.json"
    if card is not None:
        write_atomic(folder / f"{stem}.md", card.encode("utf-8"), force=True, mode=MODEL_FILE_MODE)
    write_atomic(meta_path, (json.dumps(meta, indent=2) + "\n").encode("utf-8"), force=True, mode=MODEL_FILE_MODE)
    return meta_path
