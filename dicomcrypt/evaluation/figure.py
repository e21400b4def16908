"""The paper's Figure 6 for one image: original, latent, ciphertext, decrypted latent,
reconstruction, difference.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global state),
rendered to PNG bytes so the caller can write the file atomically.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

from dicomcrypt.evaluation.evaluate import Panels

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def figure6_png(panels: Panels, title: str) -> bytes:
    """Render the six panels as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.5, 9.0), layout="constrained")
    axes = fig.subplots(2, 3)
    fig.suptitle(title)
    _show_unit(axes[0, 0], panels.original, "original")
    _show_latent(axes[0, 1], panels.latent, panels.ciphertext, "latent (encoder output, quantised)")
    cipher = _bytes_image(panels.ciphertext)
    axes[0, 2].imshow(cipher, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[0, 2].set_title(f"AES-256-GCM ciphertext ({len(panels.ciphertext):,} bytes)")
    _show_latent(axes[1, 0], panels.decrypted_latent, panels.ciphertext, "decrypted latent")
    _show_unit(axes[1, 1], panels.reconstruction, "reconstruction (decoder)")
    difference = np.abs(panels.original.astype(np.float64) - panels.reconstruction).mean(axis=2)
    # Scaled to the 99.5th percentile so the structure of the error shows, not just its few peaks.
    top = max(float(np.percentile(difference, 99.5)), 1e-6)
    shown = axes[1, 2].imshow(difference, cmap="magma", vmin=0.0, vmax=top)
    axes[1, 2].set_title(f"|original - reconstruction| (of range)\nmax {difference.max():.3f}, scale to {top:.3f}")
    fig.colorbar(shown, ax=axes[1, 2], shrink=0.8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _show_unit(ax: Axes, image: np.ndarray, title: str) -> None:
    if image.shape[2] == 1:
        ax.imshow(image[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(np.clip(image, 0.0, 1.0))
    ax.set_title(title)


def _show_latent(ax: Axes, latent: np.ndarray | None, fallback: bytes, title: str) -> None:
    """Three channels as RGB, each stretched over its own range; other counts side by side."""
    if latent is None:
        ax.imshow(_bytes_image(fallback), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{title} (bytes)")
        return
    low = latent.min(axis=(0, 1), keepdims=True)
    span = np.maximum(latent.max(axis=(0, 1), keepdims=True) - low, 1e-12)
    scaled = (latent - low) / span
    channels = latent.shape[2]
    if channels == 3:
        ax.imshow(scaled)
    else:
        ax.imshow(np.concatenate(list(np.moveaxis(scaled, 2, 0)), axis=1), cmap="gray")
    ax.set_title(f"{title}\n{latent.shape[1]}x{latent.shape[0]}x{channels}")


def _bytes_image(data: bytes) -> np.ndarray:
    """Bytes as a near-square 8-bit image (the tail padded with zeros)."""
    width = max(1, math.ceil(math.sqrt(len(data))))
    height = max(1, math.ceil(len(data) / width))
    out = np.zeros(width * height, np.uint8)
    out[: len(data)] = np.frombuffer(data, np.uint8)
    return out.reshape(height, width)
