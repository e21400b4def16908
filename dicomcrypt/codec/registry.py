"""Resolving models: ids (``name@version``) and folders to metadata, weights checked by SHA-256,
loaded once per process.

The model id and the SHA-256 of its weights travel in every envelope, so a receiver decodes with
exactly the weights the sender used or refuses (``ModelMismatchError`` in the pipeline). Unlike
CompressAI's zoo, the hash is checked -- before ``torch.load`` ever sees the bytes, and on the very
bytes that were hashed.

A model is a folder entry of three files: ``<stem>.json`` (metadata: id, architecture, channels,
weights file name and SHA-256, calibration summary), ``<stem>.pt`` (weights) and ``<stem>.md``
(model card). The shipped defaults live in ``dicomcrypt/models/``; a site's own model is a folder
holding ``model.json`` (or a single ``*.json``) and its weights, passed by path.

What a model is made of comes from its architecture's record (:mod:`dicomcrypt.codec.arch`); a
loaded model runs through :mod:`dicomcrypt.codec.runtime`; :mod:`dicomcrypt.codec.export` writes
model folders. torch is imported only when a model is actually loaded:
``import dicomcrypt.codec.registry`` (and so ``dicomcrypt inspect`` and key management) never
pays for it.
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
from pathlib import Path
from typing import Any

from dicomcrypt.codec.arch import ARCHITECTURES, architecture
from dicomcrypt.codec.runtime import LoadedModel, ModelInfo
from dicomcrypt.codec.wavelet.model import ARCH as WAVELET_ARCH
from dicomcrypt.codec.wavelet.model import WaveletModel
from dicomcrypt.errors import ModelError

logger = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODELS = {1: "ps-grey@2", 3: "ps-colour@1"}  # docs/models.md: measured on the held-out images
# What encrypt uses when no model is named: the wavelet codec (docs/codec.md). DEFAULT_MODELS stay
# the default autoencoders for train, evaluate and bench.
DEFAULT_CODECS = {1: "wavelet-grey@1", 3: "wavelet-colour@1"}
WEIGHTS_FORMAT = 1
MODELS_ENV = "DICOMCRYPT_MODELS"
# Site models loaded by folder in this process, by id: a receiver that loaded ct-model/ to encrypt
# (or was pointed at it) finds it again when an envelope names its id.
_LOADED_BY_PATH: dict[str, Path] = {}
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*@[0-9]+$")


def check_model_id(model_id: str) -> None:
    """Raise :class:`ModelError` unless ``model_id`` is of the form ``name@version``."""
    if not _ID_PATTERN.match(model_id):
        raise ModelError(f"model id {model_id!r} is not of the form name@version")


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
    model = load_codec(model_id, channels)
    if not isinstance(model, LoadedModel):
        raise ModelError(f"model {model_id} is a {model.info.arch} codec model, not an autoencoder")
    return model


def load_codec(model_id: str | None = None, channels: int = 1) -> LoadedModel | WaveletModel:
    """Any model an envelope may name: an autoencoder or a wavelet codec model (loaded once per
    process, its file checked by SHA-256). ``model_id=None`` picks :data:`DEFAULT_CODECS`."""
    if model_id is None:
        if channels not in DEFAULT_CODECS:
            raise ModelError(f"no default model for {channels}-channel images")
        model_id = DEFAULT_CODECS[channels]
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
    check_model_id(model_id)
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
def _load(meta_path: str) -> LoadedModel | WaveletModel:
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
    if meta["arch"] == WAVELET_ARCH:  # the codec's fitted parameters: no torch
        from dicomcrypt.codec.wavelet.model import load as load_wavelet

        return load_wavelet(meta, data, bytes.fromhex(found), weights_path)

    import torch

    from dicomcrypt.codec.fixed_point import FixedPointDecoder, summarise_state

    record = architecture(meta["arch"])
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        network = record.network.from_state_dict(state["float"])
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
    info = ModelInfo(model_id, bytes.fromhex(found), meta["channels"], record, weights_path, meta)
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
    if meta.get("arch") not in ARCHITECTURES and meta.get("arch") != WAVELET_ARCH:
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
