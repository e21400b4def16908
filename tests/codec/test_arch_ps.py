"""The pixel-shuffle architecture: same latent as the paper, exact decoder bit for bit, registry round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dicomcrypt.codec import fixed_point, registry
from dicomcrypt.codec.arch.paper import PaperAutoencoder
from dicomcrypt.codec.arch.ps import PLAN, ShuffleAutoencoder
from dicomcrypt.codec.export import write_model
from dicomcrypt.codec.fixed_point import FixedPointDecoder
from dicomcrypt.errors import TrainingError
from helpers.fixed_point_reference import reference_decode


def _network(channels: int) -> tuple[ShuffleAutoencoder, dict]:
    torch.manual_seed(channels)
    net = ShuffleAutoencoder(channels, width=16).eval()
    with torch.no_grad():
        net.g_s.out.bias.fill_(0.5)
    latent = net.g_a(torch.rand(2, channels, 24, 20)).detach()
    state = fixed_point.export_state(net.g_s, fixed_point.calibrate(net.g_s, [latent]))
    return net, state


def _reference(state: dict, latent: np.ndarray) -> np.ndarray:
    return reference_decode(state, latent, PLAN)


@pytest.mark.parametrize("channels", [1, 3])
def test_latent_has_the_papers_shape(channels: int) -> None:
    x = torch.rand(1, channels, 32, 18)
    with torch.no_grad():
        ours, paper = ShuffleAutoencoder(channels).g_a(x), PaperAutoencoder(channels).g_a(x)
        assert ours.shape == paper.shape == (1, 3, 16, 9)
        assert ShuffleAutoencoder(channels)(x).shape == x.shape


@pytest.mark.parametrize("channels", [1, 3])
def test_exact_decoder_matches_the_conv2d_reference_bit_for_bit(channels: int) -> None:
    _net, state = _network(channels)
    decoder = FixedPointDecoder.from_state(state, plan=PLAN)
    latent = np.random.default_rng(channels).normal(0, 2, size=(13, 11, 3))
    out = decoder(latent)
    assert out.shape == (26, 22, channels)
    assert np.array_equal(out, _reference(state, latent))
    hostile = np.random.default_rng(5).normal(0, 1e12, size=(5, 6, 3))
    assert np.array_equal(decoder(hostile), _reference(state, hostile))


def test_exact_decoder_stays_close_to_the_float_decoder() -> None:
    net, state = _network(1)
    latent = net.g_a(torch.rand(1, 1, 24, 24)).detach()
    exact = FixedPointDecoder.from_state(state, plan=PLAN)(latent[0].permute(1, 2, 0).double().numpy())
    with torch.no_grad():
        floating = net.g_s.double()(latent.double()).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(exact - floating).max() < 1e-3


def test_written_model_loads_and_tiles_to_the_same_bits(tmp_path) -> None:
    net, state = _network(1)
    meta_path = write_model(net, state, tmp_path, "model", "ps-test@1", card="card\n")
    registry.clear_cache()
    try:
        model = registry.load_model(str(tmp_path))
        assert model.info.arch == "ps-ae" and model.info.factor == 2 and model.info.latent_channels == 3
        yy, xx = np.mgrid[0:70, 0:90].astype(np.float32)
        image = (0.5 + 0.4 * np.sin(yy / 7) * np.cos(xx / 5))[None, :, :, None]
        blob = model.encode(image)
        untiled = model.decode(blob, tile=256)
        assert np.array_equal(model.decode(blob, tile=16), untiled)
        assert untiled.shape == image.shape
        assert registry.load_model("ps-test@1") is model  # found by id once its folder was loaded
    finally:
        registry.clear_cache()
    assert meta_path.name == "model.json"


def test_lossless_mode_uses_the_models_coarse_latent_and_stays_exact(tmp_path) -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    from dicomcrypt.codec.latent import latent_from_bytes
    from dicomcrypt.crypto import Key
    from dicomcrypt.pipeline import decrypt_instance, encrypt_instance

    net, state = _network(1)
    write_model(net, state, tmp_path, "model", "ps-levels@1", metadata={"lossless_latent_levels": 4})
    registry.clear_cache()
    try:
        model = registry.load_model(str(tmp_path))
        assert model.lossless_levels == 4
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        key = Key.generate()
        lossless = encrypt_instance(ds, key=key, mode="lossless", model=str(tmp_path))
        lossy = encrypt_instance(ds, key=key, mode="lossy", model=str(tmp_path))
        assert lossless.metrics["latent_bytes"] < lossy.metrics["latent_bytes"]
        restored = decrypt_instance(lossless.dataset, keys=key).dataset
        assert np.array_equal(restored.pixel_array, ds.pixel_array)
    finally:
        registry.clear_cache()
    image = np.random.default_rng(0).random((1, 3, 5, 2))
    from dicomcrypt.codec.latent import latent_to_bytes

    coarse = latent_from_bytes(latent_to_bytes(image, factor=2, original_size=(6, 10), tile=256, levels=4))
    assert len(np.unique(coarse.values[..., 0])) <= 4
    with pytest.raises(ValueError, match="levels"):
        latent_to_bytes(image, factor=2, original_size=(6, 10), tile=256, levels=1)


def _haar3(x: np.ndarray) -> np.ndarray:
    """3-band Haar of each 2x2 block (HH dropped) and back, in numpy: ``x`` (H, W), H and W even."""
    a, b, c, d = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    ll, lh, hl = (a + b + c + d) / 4, (a + b - c - d) / 4, (a - b + c - d) / 4
    out = np.empty_like(x)
    out[0::2, 0::2], out[0::2, 1::2] = ll + lh + hl, ll + lh - hl
    out[1::2, 0::2], out[1::2, 1::2] = ll - lh + hl, ll - lh - hl
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_haar_init_is_the_three_band_haar_code(channels: int) -> None:
    from dicomcrypt.codec.arch.ps import LUMA, haar_init_

    torch.manual_seed(0)
    net = haar_init_(ShuffleAutoencoder(channels, width=16)).eval()
    image = torch.rand(1, channels, 24, 20)
    with torch.no_grad():
        latent = net.g_a(image)[0].numpy()
        decoded = net.g_s(net.g_a(image))[0].numpy()
    grey = np.tensordot(np.asarray(LUMA if channels == 3 else (1.0,)), image[0].numpy().astype(np.float64), axes=1)
    np.testing.assert_allclose(latent[0], grey.reshape(12, 2, 10, 2).mean(axis=(1, 3)), atol=1e-5)
    for c in range(channels):
        np.testing.assert_allclose(decoded[c], _haar3(grey), atol=1e-5)


def test_haar_init_survives_the_fixed_point_export() -> None:
    from dicomcrypt.codec.arch.ps import haar_init_

    torch.manual_seed(1)
    net = haar_init_(ShuffleAutoencoder(1, width=32)).eval()
    image = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        latent = net.g_a(image).detach()
    state = fixed_point.export_state(net.g_s, fixed_point.calibrate(net.g_s, [latent]))
    out = FixedPointDecoder.from_state(state, plan=PLAN)(latent[0].permute(1, 2, 0).numpy().astype(np.float64))
    expected = np.clip(_haar3(image[0, 0].numpy().astype(np.float64)), 0, 1)
    assert np.abs(out[..., 0] - expected).max() < 1e-4


def test_training_starts_ps_ae_from_haar_by_default() -> None:
    from dicomcrypt.codec import train as training

    assert training.resolved_init(training.TrainConfig()) == "haar"
    assert training.resolved_init(training.TrainConfig(arch="paper-ae")) == "random"
    with pytest.raises(TrainingError):
        training.resolved_init(training.TrainConfig(arch="paper-ae", init="haar"))
