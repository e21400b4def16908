"""A fast autoencoder with the paper's latent shape: pixel (un)shuffle instead of full-resolution layers.

The paper's network (:mod:`dicomcrypt.codec.arch.paper`) spends almost all of its time in three 64-channel
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

from dicomcrypt.codec.arch import Architecture
from dicomcrypt.codec.arch.base import BaseAutoencoder, BaseDecoder

NAME = "ps-ae"
FACTOR = 2  # the paper's latent shape: 3 x H/2 x W/2
LATENT_CHANNELS = 3
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
        self.unshuffle = nn.PixelUnshuffle(FACTOR)
        self.conv1 = nn.Conv2d(in_channels * FACTOR**2, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.dense = nn.Conv2d(width, LATENT_CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(self.unshuffle(x)))
        x = torch.relu(self.conv2(x))
        return self.dense(x)


class ShuffleDecoder(BaseDecoder):
    """``g_s``: latent ``(N, 3, h, w)`` -> image ``(N, C, 2h, 2w)``, unclamped (for training)."""

    PLAN = PLAN

    def __init__(self, out_channels: int = 1, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(LATENT_CHANNELS, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, out_channels * FACTOR**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(FACTOR)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(y))
        x = torch.relu(self.conv2(x))
        return self.shuffle(self.out(x))


class ShuffleAutoencoder(BaseAutoencoder):
    """Encoder and decoder together; ``width`` is read back from saved weights."""

    arch = NAME
    g_a: ShuffleEncoder
    g_s: ShuffleDecoder

    def __init__(self, in_channels: int = 1, width: int = DEFAULT_WIDTH) -> None:
        super().__init__(in_channels)
        self.width = width
        self.g_a = ShuffleEncoder(in_channels, width)
        self.g_s = ShuffleDecoder(in_channels, width)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> ShuffleAutoencoder:
        in_channels = int(state["g_a.conv1.weight"].shape[1]) // FACTOR**2
        model = cls(in_channels, width=int(state["g_a.conv1.weight"].shape[0]))
        model.load_state_dict(state)
        return model


# ---------------------------------------------------------------------------------------------
# Haar initialisation

# Luma weights (ITU-R BT.601) for the colour model's Haar init: one latent triple per 2x2 block
# cannot hold three channels' detail, and the colour images we see (ultrasound) are mostly grey.
LUMA = (0.299, 0.587, 0.114)
_HAAR_SIGNS = (  # rows: LL, LH, HL; columns: block pixels (0,0), (0,1), (1,0), (1,1)
    (1.0, 1.0, 1.0, 1.0),
    (1.0, 1.0, -1.0, -1.0),
    (1.0, -1.0, 1.0, -1.0),
)


@torch.no_grad()
def haar_init_(model: ShuffleAutoencoder, *, leak: float = 0.0) -> ShuffleAutoencoder:
    """Make ``model`` (untrained, any width >= 6) compute a 3-band Haar code of each 2x2 block.

    Encoder: the latent's three channels are LL, LH and HL of each block,
    ``(a+b+c+d)/4, (a+b-c-d)/4, (a-b+c-d)/4`` (the HH band is dropped), of the grey value (of the
    luma, :data:`LUMA`, for 3-channel models). Through ReLUs that is exact: the first layer's centre
    tap computes each band and its negative, the second passes the six through, the 1x1 takes
    ``relu(h) - relu(-h)``. The decoder mirrors it: bands and negatives, pass-through, then the four
    pixels ``LL +- LH +- HL`` (the same value in every channel). A linear code this good is a
    strong start: on held-out MR and radiographs it keeps far more detail than the 2x2 block mean
    (docs/models.md).

    The other ``width - 6`` channels keep their random init; what they pass to the next layer is
    scaled by ``leak`` (0 by default: the untrained network *is* Haar, also through the fixed-point
    decoder). They still train: a zero weight out of a unit whose activation is not zero gets a
    gradient at the first step.
    """
    width = model.width
    if width < 6:
        raise ValueError(f"the Haar init needs width >= 6, not {width}")
    channels = model.in_channels
    weights = torch.tensor((1.0,) if channels == 1 else LUMA)
    bands = torch.tensor(_HAAR_SIGNS) / 4  # (3 bands, 4 block pixels)
    pair = torch.tensor((1.0, -1.0))
    # Encoder conv1: input channel c*4 + 2i + j (PixelUnshuffle order) -> channel 2*band + (0: +, 1: -).
    enc1 = model.g_a.conv1
    enc1.weight[:6] = 0.0
    _bias(enc1)[:6] = 0.0
    centre = (bands[:, None, None, :] * pair[None, :, None, None] * weights[None, None, :, None])  # (3, 2, C, 4)
    enc1.weight[:6, :, 1, 1] = centre.reshape(6, channels * 4)
    _pass_through_(model.g_a.conv2, leak)
    dense = model.g_a.dense
    dense.weight *= leak
    _bias(dense).zero_()
    for band in range(3):
        dense.weight[band, 2 * band, 0, 0] = 1.0
        dense.weight[band, 2 * band + 1, 0, 0] = -1.0
    # Decoder conv1: latent band -> +band, -band on channels 0..5.
    dec1 = model.g_s.conv1
    dec1.weight[:6] = 0.0
    _bias(dec1)[:6] = 0.0
    for band in range(3):
        dec1.weight[2 * band, band, 1, 1] = 1.0
        dec1.weight[2 * band + 1, band, 1, 1] = -1.0
    _pass_through_(model.g_s.conv2, leak)
    out = model.g_s.out
    out.weight *= leak
    _bias(out).zero_()
    # Pixel p of the block = sum over bands of sign[band][p] * band, i.e. the transposed Haar signs.
    synthesis = torch.tensor(_HAAR_SIGNS).T  # (4 pixels, 3 bands)
    for c in range(channels):
        for p in range(4):
            for band in range(3):
                s = float(synthesis[p, band])
                out.weight[c * 4 + p, 2 * band, 1, 1] = s
                out.weight[c * 4 + p, 2 * band + 1, 1, 1] = -s
    return model


def _pass_through_(conv: nn.Conv2d, leak: float) -> None:
    """Channels 0..5 copy themselves (centre tap 1); everything reaching them from other channels
    is scaled by ``leak``; the other channels keep their random weights."""
    conv.weight[:6] *= leak
    _bias(conv)[:6] = 0.0
    for index in range(6):
        conv.weight[index, index] = 0.0
        conv.weight[index, index, 1, 1] = 1.0


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """The layer's bias: every convolution here is built with one, but torch types it optional."""
    if conv.bias is None:
        raise ValueError("the Haar init expects convolutions with a bias")
    return conv.bias


def build(channels: int, init: str = "haar", width: int = DEFAULT_WIDTH) -> ShuffleAutoencoder:
    """A fresh network: the 3-band Haar code (:func:`haar_init_`, the default), which training
    refines, or a random init."""
    if init not in ARCHITECTURE.inits:
        raise ValueError(f"{NAME} starts from one of {ARCHITECTURE.inits}, not {init!r}")
    network = ShuffleAutoencoder(channels, width=width)
    return haar_init_(network) if init == "haar" else network


ARCHITECTURE = Architecture(
    name=NAME,
    summary="the pixel-shuffle autoencoder: the paper's latent shape, every convolution at half resolution",
    factor=FACTOR,
    latent_channels=LATENT_CHANNELS,
    inits=("haar", "random"),
    default_init="haar",
    lossless_levels=256,
    network=ShuffleAutoencoder,
    build=build,
)
