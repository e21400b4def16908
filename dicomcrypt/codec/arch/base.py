"""What every architecture's network offers the registry, the runtime and training."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from dicomcrypt.codec.fixed_point import Plan


class BaseDecoder(nn.Module):
    """``g_s``: the half that runs at the receiver; ``PLAN`` is its layer recipe for the exact
    fixed-point decoder (:mod:`dicomcrypt.codec.fixed_point`)."""

    PLAN: ClassVar[Plan]


class BaseAutoencoder(nn.Module):
    """Encoder ``g_a`` and decoder ``g_s`` as separate modules (CompressAI's ``models/google.py``)
    because they run on different machines; ``g_s.PLAN`` is the recipe the exact fixed-point
    decoder follows; ``arch`` names the architecture recorded with the weights."""

    arch = ""
    g_a: nn.Module
    g_s: BaseDecoder

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grey) or 3 (colour), not {in_channels}")
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training forward pass: unclamped reconstruction of a batch whose sides are multiples of
        the downsampling factor."""
        return self.g_s(self.g_a(x))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> BaseAutoencoder:
        """Rebuild from saved weights; each architecture reads its own sizes from them."""
        raise TypeError(f"{cls.__name__} is a base class: load weights through an architecture's class")
