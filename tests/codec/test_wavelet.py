"""The wavelet codec: exact round trips, the per-frame choice, lossy quality, determinism, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers.corpus import sample

from dicomcrypt import dicom
from dicomcrypt.codec import lossless
from dicomcrypt.codec.coders import CodingContext, coder_for
from dicomcrypt.codec.registry import DEFAULT_CODECS, load_codec
from dicomcrypt.codec.wavelet import stream, transform
from dicomcrypt.envelope import Mode
from dicomcrypt.errors import InvalidInputError, PayloadFormatError
from dicomcrypt.payload import PayloadMeta
from dicomcrypt.quality import compare
from dicomcrypt.settings import EncryptionSettings
from dicomcrypt.crypto import Key

REPO = Path(__file__).resolve().parents[2]


def _frames(name: str) -> tuple[np.ndarray, dicom.PixelFormat]:
    return dicom.read_frames(pydicom.dcmread(sample(name)))


def _roundtrip(mode: Mode, frames: np.ndarray, fmt: dicom.PixelFormat, quality: int | None = None):
    model = load_codec(None, fmt.samples_per_pixel)
    coder = coder_for(mode)
    context = CodingContext(model, quality=quality)
    packed = coder.pack(frames, fmt, context)
    meta = PayloadMeta.from_json(
        PayloadMeta.build(pixel_format=fmt, shape=frames.shape, dtype=frames.dtype, **packed.meta).to_json()
    )
    return packed, coder.unpack(packed.sections, meta, CodingContext(model)), context.metrics


@pytest.mark.parametrize("lifting", [transform.LEGALL_53, transform.CDF_97])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (5, 9), (33, 64), (128, 97)])
def test_lifting_is_exactly_reversible_for_any_size(shape, lifting):
    values = np.random.default_rng(sum(shape)).integers(-(1 << 16), 1 << 16, shape)
    levels = transform.levels_for(*shape)
    coefficients = transform.forward(values, levels, lifting)
    np.testing.assert_array_equal(transform.inverse(coefficients, levels, lifting), values)


def test_colour_transform_is_exactly_reversible():
    rgb = np.random.default_rng(3).integers(0, 1 << 16, (9, 7, 3))
    np.testing.assert_array_equal(transform.inverse_colour(transform.forward_colour(rgb)), rgb)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "US1_UNCR.dcm",
                                  "SC_ybr_full_uncompressed.dcm", "emri_small.dcm", "SC_rgb_rle_16bit.dcm"])
def test_exact_mode_restores_every_value_and_is_never_larger_than_jpeg_ls(name):
    frames, fmt = _frames(name)
    packed, restored, metrics = _roundtrip(Mode.LOSSLESS, frames, fmt)
    np.testing.assert_array_equal(restored, frames)
    assert restored.dtype == frames.dtype
    # Never larger than the standard mode's JPEG-LS blob of the same pixels, byte for byte.
    assert len(packed.sections["pixels"]) <= len(lossless.encode_frames(lossless.to_unsigned(frames)))
    assert sum(v for k, v in metrics.items() if k.endswith("_frames")) == len(frames)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "SC_ybr_full_uncompressed.dcm"])
def test_the_wavelet_stream_alone_is_exact(name):
    frames, fmt = _frames(name)
    tables = load_codec(None, fmt.samples_per_pixel).params.tables
    for frame in frames:
        colour = fmt.samples_per_pixel == 3 and not fmt.photometric_interpretation.startswith("YBR")
        data = stream.encode(frame, colour=colour, lossless=True, tables=tables)
        values, lossy = stream.decode(data, frame.shape, tables)
        assert not lossy
        np.testing.assert_array_equal(values, frame)


def test_lossy_default_meets_the_quality_floor_and_quality_orders_size_and_error():
    frames, fmt = _frames("CT_small.dcm")
    ds = pydicom.dcmread(sample("CT_small.dcm"))
    rescale = (float(ds.RescaleSlope), float(ds.RescaleIntercept))
    results = {}
    for quality in (30, None, 90):
        packed, restored, _ = _roundtrip(Mode.LOSSY, frames, fmt, quality)
        results[quality] = (len(packed.sections["pixels"]), compare(frames, restored, rescale=rescale))
    size, q = results[None]
    assert q.psnr_db >= 40 and q.ssim > 0.9528 and q.window_mae_hu <= 3
    assert results[30][0] < size < results[90][0]
    assert results[30][1].psnr_db < q.psnr_db < results[90][1].psnr_db


def test_rd_indices_are_what_the_stream_codes_and_buy_bytes_for_little_error(monkeypatch):
    import zlib

    from dicomcrypt.codec.wavelet import bands, rdo

    frames, fmt = _frames("CT_small.dcm")
    frame = frames[0].astype(np.int64)
    quantiser = _quantiser(frames[0])
    tables = load_codec(None, 1).params.tables
    levels = transform.levels_for(*frame.shape[:2])
    (plane,) = stream.analyse(frame, colour=False, quantiser=quantiser, levels=levels)
    q = rdo.choose_indices(plane, levels, quantiser.steps[0], quantiser.recon[0], kind=0,
                           costs=rdo.token_costs(tables), step_fraction=stream.STEP_FRACTION)
    rects = transform.band_slices(*q.shape, levels)
    nearest = rdo.nearest_indices(plane, rects, quantiser.steps[0], stream.STEP_FRACTION)
    lowered = np.abs(nearest) - np.abs(q)
    assert lowered.min() == 0 and lowered.max() == 1 and lowered.sum() > 0  # only ever one step towards zero
    assert np.array_equal(q[rects[0][2]], nearest[rects[0][2]])  # the low band keeps its nearest indices
    # The stream's CRC covers the indices it codes (the low band as differences): they are these.
    data = stream.encode(frame, colour=False, lossless=False, quantiser=quantiser, tables=tables)
    q[rects[0][2]] = bands.low_differences(q[rects[0][2]])
    assert int.from_bytes(data[16:20], "big") == zlib.crc32(q.astype("<i8").tobytes())
    # Against nearest indices (lambda 0): fewer bytes for at most a sliver of PSNR.
    results = {}
    for lam in (0.0, rdo.LAMBDA):
        monkeypatch.setattr(rdo, "LAMBDA", lam)
        packed, restored, _ = _roundtrip(Mode.LOSSY, frames, fmt)
        results[lam] = (len(packed.sections["pixels"]), compare(frames, restored).psnr_db)
    (nearest_size, nearest_db), (size, db) = results[0.0], results[rdo.LAMBDA]
    assert size < 0.995 * nearest_size and db > nearest_db - 0.2, results


def test_offsets_fitted_to_the_image_never_add_error_to_a_band():
    from dicomcrypt.codec.wavelet import rdo

    frames, _fmt = _frames("MR_small.dcm")
    frame = frames[0].astype(np.int64)
    quantiser = _quantiser(frames[0])
    levels = transform.levels_for(*frame.shape[:2])
    (plane,) = stream.analyse(frame, colour=False, quantiser=quantiser, levels=levels)
    steps, model = quantiser.steps[0], quantiser.recon[0]
    costs = rdo.token_costs(load_codec(None, 1).params.tables)
    q = rdo.choose_indices(plane, levels, steps, model, kind=0, costs=costs, step_fraction=stream.STEP_FRACTION)
    fitted = rdo.fitted_recon(plane, q, levels, steps, recon=model, step_fraction=stream.STEP_FRACTION)
    assert fitted != model
    for (_level, _name, rect), step, ours, theirs in zip(transform.band_slices(*q.shape, levels), steps, fitted, model):
        nonzero = q[rect] != 0
        position = np.abs(plane[rect][nonzero]) * float(1 << stream.STEP_FRACTION) / step - np.abs(q[rect][nonzero])
        assert np.sum((position - ours / 64) ** 2) <= np.sum((position - theirs / 64) ** 2) + 1e-9


def test_lossy_colour_codes_all_three_planes():
    frames, fmt = _frames("SC_rgb.dcm")
    _packed, restored, _ = _roundtrip(Mode.LOSSY, frames, fmt)
    q = compare(frames, restored)
    assert q.psnr_db >= 38 and q.ssim > 0.9528
    for plane in range(3):  # chroma is coded too, not only luma
        assert compare(frames[..., plane:plane + 1], restored[..., plane:plane + 1]).psnr_db >= 35


def test_the_pipeline_uses_the_codec_by_default_and_the_quality_knob():
    from dicomcrypt.pipeline import decrypt_instance, encrypt_instance, inspect_dataset

    key = Key.from_bytes(bytes(range(32)))
    original = pydicom.dcmread(sample("CT_small.dcm"))
    sealed = encrypt_instance(original, key=key)
    assert inspect_dataset(sealed.dataset).model_id == DEFAULT_CODECS[1]
    np.testing.assert_array_equal(decrypt_instance(sealed.dataset, keys=[key]).dataset.pixel_array,
                                  original.pixel_array)
    low = encrypt_instance(original, key=key, mode="lossy", quality=20).metrics["pixels_bytes"]
    high = encrypt_instance(original, key=key, mode="lossy", quality=95).metrics["pixels_bytes"]
    assert low < high


@pytest.mark.parametrize("quality", [0, 101, 50.5, "60", True])
def test_a_bad_quality_is_refused_when_settings_are_built(quality):
    with pytest.raises(InvalidInputError, match="quality must be an integer from 1 to 100"):
        EncryptionSettings.build(key=Key.generate(), mode="lossy", quality=quality)


def test_truncated_or_altered_streams_are_refused_with_bounded_work():
    frames, fmt = _frames("CT_small.dcm")
    tables = load_codec(None, 1).params.tables
    frame = frames[0]
    streams = [stream.encode(frame, colour=False, lossless=True, tables=tables),
               stream.encode(frame.astype(np.int64), colour=False, lossless=False, tables=tables,
                             quantiser=_quantiser(frame))]
    rng = np.random.default_rng(13)
    for data in streams:
        for trial in range(120):
            mutated = bytearray(data)
            if trial % 3 == 0:
                mutated = mutated[: int(rng.integers(0, len(mutated)))]
            elif trial % 3 == 1:
                mutated[int(rng.integers(0, len(mutated)))] ^= 1 << int(rng.integers(0, 8))
            else:
                start = int(rng.integers(0, len(mutated)))
                mutated[start:start + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
            if bytes(mutated) == data:
                continue
            with pytest.raises(PayloadFormatError):
                stream.decode(bytes(mutated), frame.shape, tables)


def test_a_stream_declaring_another_size_is_refused_before_decoding():
    frames, _fmt = _frames("MR_small.dcm")
    data = stream.encode(frames[0], colour=False, lossless=True)
    with pytest.raises(PayloadFormatError, match="declares 64 x 64 x 1, the payload 4000 x 4000 x 1"):
        stream.decode(data, (4000, 4000, 1))


def _quantiser(frame: np.ndarray) -> stream.Quantiser:
    from dicomcrypt.codec.wavelet.model import quantiser_for

    params = load_codec(None, 1).params
    return quantiser_for(params, frame.astype(np.int64), params.pixel_step(None, int(np.ptp(frame))), False)


_CODE = """
import json, sys, hashlib
import numpy as np, pydicom
from dicomcrypt import dicom
from dicomcrypt.codec.coders import CodingContext, coder_for
from dicomcrypt.codec.registry import load_codec
from dicomcrypt.envelope import Mode
from dicomcrypt.payload import PayloadMeta
path, mode, given = sys.argv[1], Mode[sys.argv[2]], sys.argv[3]
frames, fmt = dicom.read_frames(pydicom.dcmread(path))
model = load_codec(None, fmt.samples_per_pixel)
coder = coder_for(mode)
packed = coder.pack(frames, fmt, CodingContext(model))
meta = PayloadMeta.build(pixel_format=fmt, shape=frames.shape, dtype=frames.dtype, **packed.meta)
sections = {k: bytes.fromhex(v) for k, v in json.loads(open(given).read()).items()} if given != "-" else packed.sections
restored = coder.unpack(sections, meta, CodingContext(model))
print(json.dumps({"sections": {k: v.hex() for k, v in packed.sections.items()},
                  "pixels": hashlib.sha256(np.ascontiguousarray(restored).tobytes()).hexdigest()}))
"""


@pytest.mark.parametrize("mode", ["LOSSLESS", "LOSSY"])
def test_bytes_and_pixels_are_the_same_with_one_thread_and_with_several(mode, tmp_path):
    path = str(sample("US1_UNCR.dcm" if mode == "LOSSY" else "CT_small.dcm"))

    def run(threads: str, given: str) -> dict:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads, "NUMEXPR_NUM_THREADS": threads}
        done = subprocess.run([sys.executable, "-c", _CODE, path, mode, given], env=env, capture_output=True,
                              text=True, check=True, timeout=300)
        return json.loads(done.stdout)

    one = run("1", "-")
    sections = tmp_path / "sections.json"
    sections.write_text(json.dumps(one["sections"]))
    several = run("2", str(sections))  # encodes again with 2 threads and decodes the 1-thread bytes
    assert several["sections"] == one["sections"]
    assert several["pixels"] == one["pixels"]


def test_train_fits_a_wavelet_model_folder_that_encrypts_and_restores(tmp_path):
    import shutil

    from dicomcrypt.cli.main import main
    from dicomcrypt.pipeline import decrypt_instance, encrypt_instance

    data = tmp_path / "data"
    data.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(sample(name), data / name)
    out = tmp_path / "model"
    assert main(["train", str(data), "--arch", "wavelet", "--out", str(out), "--model-id", "site-wv@1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.md", "model.params"]
    key = Key.from_bytes(bytes(range(32)))
    original = pydicom.dcmread(sample("CT_small.dcm"))
    for mode in ("lossless", "lossy"):
        sealed = encrypt_instance(original, key=key, mode=mode, model=str(out))
        restored = decrypt_instance(sealed.dataset, keys=[key]).dataset.pixel_array
        if mode == "lossless":
            np.testing.assert_array_equal(restored, original.pixel_array)
        else:
            assert compare(original.pixel_array[None, ..., None], restored[None, ..., None]).psnr_db > 40
