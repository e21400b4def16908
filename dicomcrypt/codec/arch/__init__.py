"""The codec's network architectures, by name: each module declares its facts and its builder.

As CompressAI's ``models.model_architectures[name]``, one table names every architecture; here
each entry is the module that declares it, imported on first use, so reading the names (the CLI's
``--arch`` choices, checking a model's metadata) never imports torch. Each module defines
``ARCHITECTURE``, an :class:`Architecture` record: what the registry needs to load weights, what
training needs to build a fresh network, what the runtime needs to tile and check latents.

Adding an architecture: write ``arch/<name>.py`` (the network, subclassing
:class:`dicomcrypt.codec.arch.base.BaseAutoencoder`, a ``build`` function and its
``ARCHITECTURE``) and add one line to :data:`ARCHITECTURES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dicomcrypt.errors import ModelError

if TYPE_CHECKING:
    from dicomcrypt.codec.arch.base import BaseAutoencoder

ARCHITECTURES: dict[str, str] = {
    "paper-ae": "dicomcrypt.codec.arch.paper",
    "ps-ae": "dicomcrypt.codec.arch.ps",
}
"""Architecture name (the ``arch`` of a model's metadata and weights) -> the module declaring it."""

DEFAULT_ARCHITECTURE = "ps-ae"
"""What ``dicomcrypt train`` builds unless told otherwise (docs/models.md compares the two)."""


@dataclass(frozen=True)
class Architecture:
    """What the rest of the codec knows about one architecture, and how to build it.

    ``build(channels, init, width)`` returns a fresh network (after ``torch.manual_seed``);
    ``network.from_state_dict`` rebuilds one from saved weights.
    """

    name: str
    summary: str  # one line, for model cards
    factor: int  # downsampling: the latent is ceil(H / factor) x ceil(W / factor)
    latent_channels: int
    inits: tuple[str, ...]  # starting points ``build`` offers
    default_init: str
    # Latent levels in lossless mode for a model whose metadata records none (older models).
    lossless_levels: int
    network: type[BaseAutoencoder]
    build: Callable[[int, str, int], BaseAutoencoder]

    def __post_init__(self) -> None:
        if self.default_init not in self.inits:
            raise ValueError(f"{self.name}: default init {self.default_init!r} is not one of {self.inits}")


def architecture(name: str) -> Architecture:
    """The record of architecture ``name`` (imports its module, and so torch)."""
    if name not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
    record: Architecture = importlib.import_module(ARCHITECTURES[name]).ARCHITECTURE
    return record
