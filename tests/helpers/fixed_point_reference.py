"""The fixed-point decoder's arithmetic written the obvious way, to check the fast one against.

torch ``conv2d`` in float64 over NCHW tensors, one layer at a time, following a decoder's
``PLAN`` (kernel, ReLU, then ``"upsample"`` (nearest, x2) or ``"shuffle"`` (PixelShuffle 2)).
Integers below 2^53 are exact in float64, so any correct implementation must match it to the bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

LIMIT = 2**16 - 1


def reference_decode(state: dict, latent: np.ndarray, plan: Sequence[tuple[str, int, bool, str | None]]) -> np.ndarray:
    """Decode an ``(h, w, 3)`` latent with the integer ``state`` of an exported decoder."""
    x = torch.from_numpy(latent).permute(2, 0, 1)[None]
    x = torch.floor(x * 2.0 ** state["input_exp"] + 0.5).clamp(-LIMIT, LIMIT)
    act_exp = state["input_exp"]
    for name, kernel, relu, post in plan:
        layer = state["layers"][name]
        acc = F.conv2d(x, layer["weight"].double(), layer["bias"].double(), padding=kernel // 2)
        if name == "out":
            out = (acc * 2.0 ** -(act_exp + layer["weight_exp"])).clamp(0, 1)
            if post == "shuffle":
                out = F.pixel_shuffle(out, 2)
            return out[0].permute(1, 2, 0).numpy()
        shift = act_exp + layer["weight_exp"] - layer["act_exp"]
        x = torch.floor((acc + 2.0 ** (shift - 1)) * 2.0**-shift) if shift > 0 else acc * 2.0**-shift
        x = x.clamp(0 if relu else -LIMIT, LIMIT)
        if post == "upsample":
            x = x.repeat_interleave(2, 2).repeat_interleave(2, 3)
        act_exp = layer["act_exp"]
    raise AssertionError("no output layer")
