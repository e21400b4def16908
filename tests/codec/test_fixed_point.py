"""The fixed-point decoder: matches an independent reference to the bit, holds its bounds."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dicomcrypt.codec import fixed_point
from dicomcrypt.codec.arch.paper import PLAN, PaperAutoencoder
from dicomcrypt.codec.fixed_point import FixedPointDecoder, conv_transpose_as_conv
from dicomcrypt.codec.registry import load_model
from dicomcrypt.errors import ModelError
from helpers.fixed_point_reference import reference_decode


@pytest.fixture(scope="module")
def state() -> dict:
    """The integer state shipped inside paper-grey@1's weights."""
    model = load_model("paper-grey@1")
    return torch.load(io.BytesIO(model.info.weights_path.read_bytes()), weights_only=True)["fixed"]


def _reference(state: dict, latent: np.ndarray) -> np.ndarray:
    return reference_decode(state, latent, PLAN)


def test_matches_the_conv2d_reference_bit_for_bit(state: dict) -> None:
    latent = np.random.default_rng(0).normal(0, 2, size=(23, 17, 3))
    decoder = FixedPointDecoder.from_state(state, plan=PLAN)
    assert np.array_equal(decoder(latent), _reference(state, latent))


def test_a_session_reused_across_tile_shapes_gives_the_same_bits(state: dict) -> None:
    decoder = FixedPointDecoder.from_state(state, plan=PLAN)
    session = decoder.session()
    rng = np.random.default_rng(1)
    tiles = [rng.normal(0, 2, size=shape) for shape in ((12, 9, 3), (5, 20, 3), (12, 9, 3), (1, 1, 3))]
    for tile in tiles:
        assert np.array_equal(session(tile), decoder(tile))


def test_hostile_latent_saturates_but_stays_exact(state: dict) -> None:
    latent = np.random.default_rng(2).normal(0, 1e12, size=(9, 9, 3))
    out = FixedPointDecoder.from_state(state, plan=PLAN)(latent)
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out, _reference(state, latent))


def test_exported_weights_respect_the_bounds(state: dict) -> None:
    for name, _kernel, _relu, _upsample in PLAN:
        layer = state["layers"][name]
        assert int(layer["weight"].abs().max()) <= fixed_point.WEIGHT_LIMIT
        assert int(layer["bias"].abs().max()) <= fixed_point.BIAS_LIMIT
        assert layer["weight"].shape[1] * layer["weight"].shape[2] * layer["weight"].shape[3] <= 576


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s["layers"]["deconv2"].__setitem__("weight", s["layers"]["deconv2"]["weight"].int() * 32), "weight"),
        (lambda s: s["layers"]["out"].__setitem__("bias", torch.full_like(s["layers"]["out"]["bias"], 2**45)), "bias"),
        (lambda s: s.__setitem__("input_exp", 99), "input_exp"),
        (lambda s: s["layers"].pop("deconv3"), "incomplete"),
    ],
)
def test_state_breaking_the_bounds_is_refused(state: dict, edit, message: str) -> None:
    broken = copy.deepcopy(state)
    edit(broken)
    with pytest.raises(ModelError, match=message):
        FixedPointDecoder.from_state(broken, plan=PLAN)


def test_export_of_a_fresh_network_is_close_to_float() -> None:
    torch.manual_seed(0)
    net = PaperAutoencoder(1)
    with torch.no_grad():
        net.g_s.out.bias.fill_(0.5)
    latent = net.g_a(torch.rand(1, 1, 24, 24)).detach()
    peaks = fixed_point.calibrate(net.g_s, [latent])
    decoder = FixedPointDecoder.from_state(fixed_point.export_state(net.g_s, peaks), plan=PLAN)
    exact = decoder(latent[0].permute(1, 2, 0).double().numpy())
    with torch.no_grad():
        floating = net.g_s.double()(latent.double()).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(exact - floating).max() < 1e-3


def test_conv_transpose_conversion() -> None:
    layer = torch.nn.ConvTranspose2d(4, 6, 3, padding=1).double()
    x = torch.randn(1, 4, 7, 5, dtype=torch.float64)
    converted = F.conv2d(x, conv_transpose_as_conv(layer.weight), layer.bias, padding=1)
    assert torch.allclose(layer(x), converted, atol=1e-12)
