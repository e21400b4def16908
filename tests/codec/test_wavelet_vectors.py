"""The wavelet stream's known answers (tests/vectors/wavelet.json): same bytes, same pixels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from dicomcrypt.codec.registry import load_codec
from dicomcrypt.codec.wavelet import stream
from dicomcrypt.codec.wavelet.model import quantiser_for

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "wavelet.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_streams_decode_to_the_recorded_pixels_and_encode_to_the_recorded_bytes(vector):
    model = load_codec(vector["model_id"])
    assert model.info.sha256.hex() == vector["model_sha256"], "model refitted: regenerate the vectors"
    tables = model.params.tables
    frame = np.array(vector["pixels"], dtype=vector["dtype"]).reshape(vector["shape"])
    exact, lossy = bytes.fromhex(vector["exact_stream"]), bytes.fromhex(vector["lossy_stream"])
    values, was_lossy = stream.decode(exact, frame.shape, tables)
    assert not was_lossy
    np.testing.assert_array_equal(values, frame)
    decoded, was_lossy = stream.decode(lossy, frame.shape, tables)
    assert was_lossy and hashlib.sha256(decoded.astype("<i8").tobytes()).hexdigest() == vector["lossy_decoded_sha256"]
    assert stream.encode(frame, colour=vector["colour"], lossless=True, tables=tables) == exact
    value_range = int(frame.max()) - int(frame.min())
    quantiser = quantiser_for(model.params, frame.astype(np.int64),
                              model.params.pixel_step(vector["lossy_quality"], value_range), vector["colour"])
    assert stream.encode(frame, colour=vector["colour"], lossless=False, quantiser=quantiser, tables=tables) == lossy


def test_the_generator_still_writes_the_committed_file():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "vectors" / "make_wavelet_vectors.py"
    spec = importlib.util.spec_from_file_location("make_wavelet_vectors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == path.with_name("wavelet.json").read_text(encoding="utf-8")


EARLIER = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "wavelet-earlier-encoder.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("vector", EARLIER["vectors"], ids=lambda v: v["name"])
def test_streams_of_the_earlier_lossy_encoder_still_decode_to_their_pixels(vector):
    """The RD-optimised encoder changed the lossy bytes, not the format: envelopes sealed before decode alike."""
    model = load_codec(vector["model_id"])
    assert model.info.sha256.hex() == vector["model_sha256"]
    lossy = bytes.fromhex(vector["lossy_stream"])
    decoded, was_lossy = stream.decode(lossy, tuple(vector["shape"]), model.params.tables)
    assert was_lossy and hashlib.sha256(decoded.astype("<i8").tobytes()).hexdigest() == vector["lossy_decoded_sha256"]
