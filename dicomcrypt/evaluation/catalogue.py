"""What models are installed and what their cards say they measured, without loading torch.

Reads the metadata files the registry reads (``<stem>.json`` next to the weights) and hashes the
weights file, so ``dicomcrypt models`` shows at a glance whether the weights on disk are the ones
the metadata names -- the same SHA-256 check :func:`dicomcrypt.codec.registry.load_model` makes
before it will decode anything.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomcrypt.codec import registry
from dicomcrypt.errors import ModelError


@dataclass(frozen=True)
class ModelEntry:
    """One installed model, as its metadata describes it."""

    model_id: str
    arch: str
    channels: int
    weights_bytes: int
    sha256: str
    sha256_ok: bool
    metadata_path: Path
    card_path: Path | None
    held_out: tuple[dict[str, Any], ...]  # per held-out file: file, modality, ssim, psnr_range_db

    def quality_summary(self) -> str:
        """'SSIM min 0.855 median 0.978, PSNR (range) min 34.0 dB on 3 held-out images' or '-'."""
        ssims = [row["ssim"] for row in self.held_out if row.get("ssim") is not None]
        psnrs = [row["psnr_range_db"] for row in self.held_out if row.get("psnr_range_db") is not None]
        if not ssims:
            return "-"
        text = f"SSIM min {min(ssims):.3f} median {statistics.median(ssims):.3f}"
        if psnrs:
            text += f", PSNR (range) min {min(psnrs):.1f} dB"
        return f"{text} on {len(ssims)} held-out image{'' if len(ssims) == 1 else 's'}"


def installed_models() -> list[ModelEntry]:
    """The models shipped with this build, sorted by id."""
    by_id = {}
    for path in sorted(registry.MODELS_DIR.glob("*.json")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("model_id") in registry.available_models():
            by_id[meta["model_id"]] = _entry(path, meta)
    return [by_id[k] for k in sorted(by_id)]


def find_model(model_id_or_path: str) -> ModelEntry:
    """A shipped model by id, or a site's model folder / metadata file by path."""
    for entry in installed_models():
        if entry.model_id == model_id_or_path:
            return entry
    path = Path(model_id_or_path).expanduser()
    if path.is_dir():
        path = registry.metadata_file_in(path)
    if not path.is_file():
        known = ", ".join(e.model_id for e in installed_models()) or "none"
        raise ModelError(f"unknown model {model_id_or_path} (installed: {known}; or give a model folder)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model metadata {path} is unreadable ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("model_id"), str):
        raise ModelError(f"model metadata {path} has no model_id")
    return _entry(path, meta)


def _entry(path: Path, meta: dict[str, Any]) -> ModelEntry:
    weights = path.parent / str(meta.get("weights", ""))
    try:
        data = weights.read_bytes()
    except OSError:
        data = b""
    card = meta.get("card")
    card_path = path.parent / card if isinstance(card, str) and (path.parent / card).is_file() else None
    return ModelEntry(
        model_id=meta["model_id"],
        arch=str(meta.get("arch", "?")),
        channels=int(meta.get("channels", 0)),
        weights_bytes=len(data),
        sha256=str(meta.get("sha256", "")),
        sha256_ok=bool(data) and hashlib.sha256(data).hexdigest() == meta.get("sha256"),
        metadata_path=path,
        card_path=card_path,
        held_out=tuple(_held_out(meta)),
    )


def _held_out(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-file figures from the metadata's ``evaluation`` list: what the lossy mode delivers
    (fixed-point decoder, padding restored) when recorded, else the plain fixed-point figure."""
    rows = []
    for item in meta.get("evaluation") or []:
        if not isinstance(item, dict):
            continue
        ssim = _first(item, "ssim_fixed_padding_restored", "ssim_fixed", "ssim")
        psnr = _first(item, "psnr_fixed_padding_restored", "psnr_fixed", "psnr_range_db", "psnr")
        rows.append({"file": item.get("file"), "modality": item.get("modality"), "ssim": ssim, "psnr_range_db": psnr})
    return rows


def _first(item: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        if isinstance(item.get(key), (int, float)):
            return float(item[key])
    return None
