"""A fast autoencoder with the paper's latent shape: pixel (un)shuffle instead of full-resolution layers.

The paper's network (:mod:`dicomcrypt.codec.model`) spends almost all of its time in three 64-channel
3x3 convolutions at *full* resolution in the decoder and one in the encoder. Here every convolution
runs at the latent's half resolution: the encoder folds each 2x2 block into channels
(``PixelUnshuffle``), the decoder predicts the four pixels of each block as channels and unfolds them
(``PixelShuffle``). Same latent (3 x H/2 x W/2), about a tenth of the arithmetic, and no worse in
quality (design.md section 6): the 2x2 block is exactly what one latent position describes, so
letting the network see it whole costs nothing.

Data flow (``C`` = 1 grey or 3 colour; ``K`` = width, 32 for the shipped models)::

    x  C x H x W                                             x_hat  C x H x W
    |                                                          ^  clamp [0, 1] at inference
    v                                                          |
    +---------------------+                      +----------------------------+
    | PixelUnshuffle 2    |  4C x H/2 x W/2      | PixelShuffle 2             |
    | Conv 3x3, K   ReLU  |                      | Conv 3x3, 4C (linear)      |  4C x H/2 x W/2
    | Conv 3x3, K   ReLU  |                      | Conv 3x3, K   ReLU         |
    | Conv 1x1, 3 linear  |                      | Conv 3x3, K   ReLU         |   K x H/2 x W/2
    +---------------------+                      +----------------------------+
         g_a |                                                 ^ g_s
             v                                                 |
             y  3 x H/2 x W/2 --> quantise --> AES-GCM --> ... +

Tiling (:mod:`dicomcrypt.codec.tiling`) stays exact: the decoder's three 3x3 layers reach 3 latent
pixels past a tile edge, the encoder's two reach 2, both under the 4-latent-pixel halo.
"""

from __future__ import annotations

import torch
from torch import nn

from dicomcrypt.codec.model import DOWNSAMPLE, LATENT_CHANNELS, BaseAutoencoder

ARCH = "ps-ae"
DEFAULT_WIDTH = 32

# The exact decoder's recipe (see dicomcrypt.codec.fixed_point): (layer, kernel, ReLU after, then).
PLAN: tuple[tuple[str, int, bool, str | None], ...] = (
    ("conv1", 3, True, None),
    ("conv2", 3, True, None),
    ("out", 3, False, "shuffle"),
)


class ShuffleEncoder(nn.Module):
    """``g_a``: image ``(N, C, H, W)`` -> latent ``(N, 3, H/2, W/2)`` (H, W even)."""

    def __init__(self, in_channels: int = 1, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(DOWNSAMPLE)
        self.conv1 = nn.Conv2d(in_channels * DOWNSAMPLE**2, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.dense = nn.Conv2d(width, LATENT_CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(self.unshuffle(x)))
        x = torch.relu(self.conv2(x))
        return self.dense(x)


class ShuffleDecoder(nn.Module):
    """``g_s``: latent ``(N, 3, h, w)`` -> image ``(N, C, 2h, 2w)``, unclamped (for training)."""

    PLAN = PLAN

    def __init__(self, out_channels: int = 1, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(LATENT_CHANNELS, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, out_channels * DOWNSAMPLE**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(DOWNSAMPLE)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(y))
        x = torch.relu(self.conv2(x))
        return self.shuffle(self.out(x))


class ShuffleAutoencoder(BaseAutoencoder):
    """Encoder and decoder together; ``width`` is read back from saved weights."""

    arch = ARCH

    def __init__(self, in_channels: int = 1, width: int = DEFAULT_WIDTH) -> None:
        super().__init__(in_channels)
        self.width = width
        self.g_a = ShuffleEncoder(in_channels, width)
        self.g_s = ShuffleDecoder(in_channels, width)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "ShuffleAutoencoder":
        in_channels = int(state["g_a.conv1.weight"].shape[1]) // DOWNSAMPLE**2
        model = cls(in_channels, width=int(state["g_a.conv1.weight"].shape[0]))
        model.load_state_dict(state)
        return model
