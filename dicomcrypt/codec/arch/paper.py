"""The paper's autoencoder (Alslman et al. 2022, Table 2) in PyTorch.

Encoder ``g_a`` and decoder ``g_s`` are separate modules, as in CompressAI's ``models/google.py``,
because they run on different machines: the sender only needs ``g_a``, the receiver only ``g_s``
(and in practice a fixed-point copy of it, :mod:`dicomcrypt.codec.fixed_point`).

Data flow (``C`` = 1 for greyscale, 3 for colour; spatial sizes for an ``H x W`` input)::

    sender                                                   receiver

    x  C x H x W                                             x_hat  C x H x W
    |                                                          ^  clamp [0, 1] at inference
    v                                                          |
    +-----------------+                              +-----------------------+
    | Conv 3x3, 64    | ReLU   64 x H x W            | ConvT 3x3, C (linear) |
    | MaxPool 2       |        64 x H/2 x W/2        | ConvT 3x3, 64   ReLU  |  64 x H x W
    | Conv 3x3, 64    | ReLU   64 x H/2 x W/2        | ConvT 3x3, 64   ReLU  |  64 x H x W
    | Conv 3x3, 32    | ReLU   32 x H/2 x W/2        | Upsample 2 (nearest)  |  32 x H x W
    | Conv 1x1, 3     | linear  ("Dense")            | ConvT 3x3, 32   ReLU  |  32 x H/2 x W/2
    +-----------------+                              | Conv 1x1, 3  (linear) |   3 x H/2 x W/2
        g_a  |                                       +-----------------------+
             v                                                 ^  g_s
             y  3 x H/2 x W/2 --> quantise --> AES-GCM --> ... -+

The Keras "Dense" layers of the paper act on the last (channel) axis, so they are 1x1
convolutions. ConvTranspose 3x3 with stride 1 and "same" padding is the same operation as a
3x3 convolution with flipped, transposed weights; we keep ConvTranspose for fidelity to the
paper and convert when building the fixed-point decoder. The network is fully convolutional:
any size works once padded to a multiple of :data:`FACTOR` (:func:`dicomcrypt.codec.tiling.pad_to_multiple`).
"""

from __future__ import annotations

import torch
from torch import nn

from dicomcrypt.codec.arch import Architecture
from dicomcrypt.codec.arch.base import BaseAutoencoder, BaseDecoder

NAME = "paper-ae"
FACTOR = 2
LATENT_CHANNELS = 3

# The exact decoder's recipe (dicomcrypt.codec.fixed_point): (layer, kernel, ReLU after it, then
# "upsample" (nearest 2x) / "shuffle" (PixelShuffle 2) / None). The last layer is the linear output.
PLAN: tuple[tuple[str, int, bool, str | None], ...] = (
    ("dense", 1, False, None),
    ("deconv1", 3, True, "upsample"),
    ("deconv2", 3, True, None),
    ("deconv3", 3, True, None),
    ("out", 3, False, None),
)


class Encoder(nn.Module):
    """``g_a``: image ``(N, C, H, W)`` -> latent ``(N, 3, H/2, W/2)`` (H, W even)."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(FACTOR)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 32, 3, padding=1)
        self.dense = nn.Conv2d(32, LATENT_CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.dense(x)


class Decoder(BaseDecoder):
    """``g_s``: latent ``(N, 3, h, w)`` -> image ``(N, C, 2h, 2w)``, unclamped (for training)."""

    PLAN = PLAN

    def __init__(self, out_channels: int = 1) -> None:
        super().__init__()
        self.dense = nn.Conv2d(LATENT_CHANNELS, LATENT_CHANNELS, 1)
        self.deconv1 = nn.ConvTranspose2d(LATENT_CHANNELS, 32, 3, padding=1)
        self.up = nn.Upsample(scale_factor=FACTOR, mode="nearest")
        self.deconv2 = nn.ConvTranspose2d(32, 64, 3, padding=1)
        self.deconv3 = nn.ConvTranspose2d(64, 64, 3, padding=1)
        self.out = nn.ConvTranspose2d(64, out_channels, 3, padding=1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.dense(y)
        x = self.up(torch.relu(self.deconv1(x)))
        x = torch.relu(self.deconv2(x))
        x = torch.relu(self.deconv3(x))
        return self.out(x)


class PaperAutoencoder(BaseAutoencoder):
    """Encoder and decoder together, for training and for the float reference path."""

    arch = NAME

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__(in_channels)
        self.g_a = Encoder(in_channels)
        self.g_s = Decoder(in_channels)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> PaperAutoencoder:
        """Rebuild from saved weights; the channel count is read off the first conv."""
        in_channels = int(state["g_a.conv1.weight"].shape[1])
        model = cls(in_channels)
        model.load_state_dict(state)
        return model


def build(channels: int, init: str = "random", width: int = 0) -> PaperAutoencoder:
    """A fresh, randomly initialised network; the paper fixes the widths (``width`` is not used)."""
    if init != "random":
        raise ValueError(f"{NAME} starts from a random init only, not {init!r}")
    return PaperAutoencoder(channels)


ARCHITECTURE = Architecture(
    name=NAME,
    summary="the paper's autoencoder (Alslman et al. 2022, Table 2): 64-channel layers at full resolution",
    factor=FACTOR,
    latent_channels=LATENT_CHANNELS,
    inits=("random",),
    default_init="random",
    lossless_levels=256,
    network=PaperAutoencoder,
    build=build,
)
