"""The coder registry: one coder per mode, each round-trips frames, and a new coder plugs in."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt import dicom
from dicomcrypt.codec.coders import Coder, CodingContext, Packed, coder_for, register
from dicomcrypt.codec.coders.lossless import LosslessCoder
from dicomcrypt.codec.coders.lossy import LossyCoder
from dicomcrypt.codec.coders.standard import StandardCoder
from dicomcrypt.codec.registry import load_model
from dicomcrypt.crypto import Key
from dicomcrypt.dicom import PixelFormat
from dicomcrypt.envelope import Mode, instance_binding, open_envelope
from dicomcrypt.errors import InvalidInputError, PayloadFormatError
from dicomcrypt.limits import DecodeLimits
from dicomcrypt.payload import Payload, PayloadMeta, section
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance, pixel_digest
from dicomcrypt.quality import compare


def _frames(name: str) -> tuple[np.ndarray, PixelFormat]:
    return dicom.read_frames(pydicom.dcmread(get_testdata_file(name)))


def _round_trip(coder: Coder, frames: np.ndarray, fmt: PixelFormat) -> tuple[np.ndarray, CodingContext]:
    """Pack, then unpack through the metadata's JSON, as the pipeline does."""
    model = load_model(None, channels=fmt.samples_per_pixel) if coder.needs_model else None
    context = CodingContext(model)
    packed = coder.pack(frames, fmt, context)
    meta = PayloadMeta.build(pixel_format=fmt, shape=frames.shape, dtype=frames.dtype, **packed.meta)
    return coder.unpack(packed.sections, PayloadMeta.from_json(meta.to_json()), CodingContext(model)), context


def test_each_mode_has_its_coder() -> None:
    assert isinstance(coder_for(Mode.STANDARD), StandardCoder)
    assert isinstance(coder_for(Mode.LOSSY), LossyCoder)
    assert isinstance(coder_for(Mode.LOSSLESS), LosslessCoder)
    assert [coder_for(mode).exact for mode in Mode] == [True, False, True]
    assert [coder_for(mode).needs_model for mode in Mode] == [True, True, False]


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb.dcm", "liver_1frame.dcm", "examples_palette.dcm"])
def test_the_standard_coder_restores_every_value(name: str) -> None:
    frames, fmt = _frames(name)
    restored, _ = _round_trip(coder_for(Mode.STANDARD), frames, fmt)
    assert restored.dtype == frames.dtype
    np.testing.assert_array_equal(restored, frames)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, np.int32, np.float32])
def test_the_standard_coder_takes_every_sample_type(dtype: type) -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(-1000, 1000, size=(2, 9, 7, 1)).astype(dtype)
    # The payload's pixel format must describe the frames (PayloadMeta.from_json checks it).
    kind = np.dtype(dtype).kind
    fmt = dataclasses.replace(
        _frames("CT_small.dcm")[1], frames=2, rows=9, columns=7, bits_allocated=8 * np.dtype(dtype).itemsize,
        bits_stored=8 * np.dtype(dtype).itemsize, pixel_representation=int(kind == "i"), is_float=kind == "f",
    )
    np.testing.assert_array_equal(_round_trip(coder_for(Mode.STANDARD), frames, fmt)[0], frames)


@pytest.mark.parametrize("name", ["CT_small.dcm", "emri_small_jpeg_ls_lossless.dcm", "SC_rgb.dcm"])
def test_the_lossless_coder_restores_every_value(name: str) -> None:
    frames, fmt = _frames(name)
    restored, context = _round_trip(coder_for(Mode.LOSSLESS), frames, fmt)
    np.testing.assert_array_equal(restored, frames)
    assert {"latent_bytes", "residual_bytes", "predictor_none_frames"} <= set(context.metrics)


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb.dcm"])
def test_the_lossy_coder_stays_close(name: str) -> None:
    frames, fmt = _frames(name)
    restored, context = _round_trip(coder_for(Mode.LOSSY), frames, fmt)
    assert restored.shape == frames.shape and restored.dtype == frames.dtype
    assert compare(frames, restored).psnr_db > 30
    assert context.metrics["latent_bytes"] < frames.nbytes


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no coder for mode 9"):
        coder_for(9)


def test_a_second_coder_for_a_mode_is_refused_unless_it_replaces() -> None:
    with pytest.raises(ValueError, match="STANDARD already has a coder"):
        register(StandardCoder())
    original = coder_for(Mode.STANDARD)
    assert register(original, replace=True) is original


def test_an_inexact_coder_must_say_how_its_output_is_described() -> None:
    class Blurry(ZstdCoder):
        exact = False

    with pytest.raises(ValueError, match="derivation"):
        register(Blurry(), replace=True)
    assert type(coder_for(Mode.STANDARD)) is StandardCoder  # nothing was replaced


class ZstdCoder(Coder):
    """A codec a newcomer might add: zstd of the raw little-endian samples."""

    mode = Mode.STANDARD
    packed = 0

    def pack(self, frames: np.ndarray, fmt: PixelFormat, context: CodingContext) -> Packed:
        import zstandard

        ZstdCoder.packed += 1
        little = frames.astype(frames.dtype.newbyteorder("<"))
        return Packed({"pixels": zstandard.ZstdCompressor().compress(little.tobytes())})

    def unpack(self, sections: Mapping[str, bytes], meta: PayloadMeta, context: CodingContext) -> np.ndarray:
        import zstandard

        raw = zstandard.ZstdDecompressor().decompress(section(sections, "pixels"))
        little = np.frombuffer(raw, meta.dtype.newbyteorder("<"))
        return little.astype(meta.dtype).reshape(meta.shape)


@pytest.fixture
def zstd_coder() -> Iterator[ZstdCoder]:
    """The test coder registered for the standard mode, and the built-in one put back after."""
    coder = ZstdCoder()
    previous = register(coder, replace=True)
    try:
        yield coder
    finally:
        assert previous is not None
        register(previous, replace=True)


def test_a_registered_coder_is_used_by_the_pipeline_unchanged(zstd_coder: ZstdCoder) -> None:
    import zstandard

    key = Key.generate()
    original = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    frames = dicom.read_frames(original)[0]
    sealed = encrypt_instance(original, key=key, mode="standard")
    assert sealed.mode == "standard" and ZstdCoder.packed == 1
    info = dicom.read_private_block(sealed.dataset)
    binding = instance_binding(*dicom.uids(sealed.dataset))
    _, plaintext = open_envelope(info.envelope, keys=[key], binding=binding)
    payload = Payload.from_bytes(plaintext)
    little = frames.astype(frames.dtype.newbyteorder("<"))
    assert zstandard.ZstdDecompressor().decompress(payload.section("pixels")) == little.tobytes()
    assert payload.meta["digest"] == pixel_digest(frames)  # the recipe still seals the digest
    restored = decrypt_instance(sealed.dataset, keys=[key]).dataset
    np.testing.assert_array_equal(dicom.read_frames(restored)[0], frames)


# -- a latent is checked against the payload and the model before the decoder runs (issue 12) --


def _lossy_packed() -> tuple[Packed, PayloadMeta, object]:
    frames, fmt = _frames("CT_small.dcm")
    model = load_model(None, channels=1)
    packed = LossyCoder().pack(frames, fmt, CodingContext(model))
    meta = PayloadMeta.build(pixel_format=fmt, shape=frames.shape, dtype=frames.dtype, **packed.meta)
    return packed, meta, model


def test_a_latent_for_another_image_is_refused_before_decoding() -> None:
    packed, meta, model = _lossy_packed()
    other = load_model(None, channels=1).encode(np.zeros((3, 128, 128, 1), np.float32))
    with pytest.raises(PayloadFormatError, match="latent declares 3 frames of 128 x 128, the payload 1 of 128 x 128"):
        LossyCoder().unpack({**packed.sections, "latent": other}, meta, CodingContext(model))


def test_decoding_work_over_the_limit_is_refused_before_decoding() -> None:
    packed, meta, model = _lossy_packed()
    tight = CodingContext(model, limits=DecodeLimits(max_model_pixels=10_000))
    with pytest.raises(PayloadFormatError, match=r"needs 16384 pixels decoded by the model \(1 frames of 128 x 128\), "
                                                 "the limit is 10000"):
        LossyCoder().unpack(packed.sections, meta, tight)
    with pytest.raises(PayloadFormatError, match="the limit is 10000"):
        LosslessCoder().unpack(
            {**packed.sections, "residual": b""},
            dataclasses.replace(meta, payload_version=2, residual_predictor=("decoder",)), tight,
        )
