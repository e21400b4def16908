"""Writing a model folder entry: weights, metadata with their SHA-256, and a model card.

The inverse of :mod:`dicomcrypt.codec.registry`, which reads what this writes and checks the
hash before torch sees the weights. Used by :mod:`dicomcrypt.codec.train` (``dicomcrypt train``
and ``scripts/train_default_models.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomcrypt.atomic import write_atomic
from dicomcrypt.codec.registry import WEIGHTS_FORMAT, check_model_id

if TYPE_CHECKING:
    from dicomcrypt.codec.arch.base import BaseAutoencoder

MODEL_FILE_MODE = 0o644
"""Model weights, metadata and cards are shared read-only data, not secrets."""


def write_model(
    network: BaseAutoencoder,
    fixed_state: dict,
    folder: Path,
    stem: str,
    model_id: str,
    *,
    metadata: dict[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Save weights, metadata (with their SHA-256) and an optional card; returns the metadata path.

    The architecture is the network's own (``network.arch``). Files are written atomically
    (weights before metadata).
    """
    import torch

    from dicomcrypt.codec.fixed_point import summarise_state

    arch = network.arch
    check_model_id(model_id)
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
    write_model_file(weights, buffer.getvalue())
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
        write_card(meta_path, meta, card)
    _write_metadata(meta_path, meta)
    return meta_path


def update_metadata(meta_path: Path, **fields: Any) -> dict[str, Any]:
    """Add ``fields`` (measurements made after export) to a model's metadata; returns all of it."""
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.update(fields)
    _write_metadata(meta_path, meta)
    return meta


def write_card(meta_path: Path, meta: dict[str, Any], text: str) -> Path:
    """Write the model card the metadata names (``<stem>.md`` if it names none)."""
    card_path = meta_path.parent / (meta.get("card") or f"{meta_path.stem}.md")
    write_model_file(card_path, text.encode("utf-8"))
    return card_path


def _write_metadata(meta_path: Path, meta: dict[str, Any]) -> None:
    write_model_file(meta_path, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))


def write_model_file(path: Path, data: bytes) -> None:
    """Write one file of a model folder (weights, metadata, card, checkpoint, loss curve): atomic,
    replacing an older version, readable by all (:data:`MODEL_FILE_MODE`)."""
    write_atomic(path, data, force=True, mode=MODEL_FILE_MODE)
