"""Exact-mode effort (``--effort``): which codings each frame tries is the encoder's choice only.

Every effort restores every value, is never larger than JPEG-LS, tries only its own codings, and
writes nothing a decoder needs to know: a payload of any effort decodes without the setting.
"""

from __future__ import annotations

import imagecodecs
import numpy as np
import pydicom
import pytest
from helpers.corpus import sample

from dicomcrypt import dicom
from dicomcrypt.cli.main import _setup_argparser
from dicomcrypt.codec import lossless
from dicomcrypt.codec.coders import CodingContext, coder_for, wavelet
from dicomcrypt.codec.registry import load_codec
from dicomcrypt.crypto import Key
from dicomcrypt.envelope import Mode
from dicomcrypt.errors import InvalidInputError
from dicomcrypt.payload import PayloadMeta
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance
from dicomcrypt.settings import EFFORTS, EncryptionSettings

ALLOWED = {  # the codings (record byte) each effort may write
    "fast": {wavelet.JPEG_LS, wavelet.ZSTD, wavelet.JPEG_XL},
    "balanced": {wavelet.JPEG_LS, wavelet.ZSTD, wavelet.JPEG_XL},
    "smallest": {wavelet.JPEG_LS, wavelet.ZSTD, wavelet.JPEG_XL, wavelet.WAVELET},
}


def test_the_effort_names_are_the_coders_and_the_default_is_one_of_them():
    assert tuple(wavelet.EXACT_EFFORTS) == EFFORTS == tuple(ALLOWED)
    assert wavelet.DEFAULT_EFFORT in EFFORTS


@pytest.mark.parametrize("effort", EFFORTS)
@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb.dcm"])
def test_every_effort_is_exact_never_larger_than_jpeg_ls_and_uses_only_its_codings(name, effort):
    frames, fmt = dicom.read_frames(pydicom.dcmread(sample(name)))
    model = load_codec(None, fmt.samples_per_pixel)
    coder = coder_for(Mode.LOSSLESS)
    packed = coder.pack(frames, fmt, CodingContext(model, effort=effort))
    assert dict(packed.meta) == {"codec": "wavelet"}  # nothing of the effort reaches the payload
    meta = PayloadMeta.from_json(
        PayloadMeta.build(pixel_format=fmt, shape=frames.shape, dtype=frames.dtype, **packed.meta).to_json()
    )
    restored = coder.unpack(packed.sections, meta, CodingContext(model))  # the decoder is given no effort
    np.testing.assert_array_equal(restored, frames)
    blob = packed.sections["pixels"]
    assert len(blob) <= len(lossless.encode_frames(lossless.to_unsigned(frames)))
    codings = {coding for coding, _data in lossless.split_records(blob, len(frames))}
    assert codings <= ALLOWED[effort]


def test_a_higher_effort_is_never_larger():
    frames, fmt = dicom.read_frames(pydicom.dcmread(sample("CT_small.dcm")))
    model = load_codec(None, 1)
    sizes = {effort: len(coder_for(Mode.LOSSLESS).pack(frames, fmt, CodingContext(model, effort=effort))
                         .sections["pixels"]) for effort in EFFORTS}
    assert sizes["smallest"] <= sizes["balanced"] <= sizes["fast"]


@pytest.mark.parametrize("effort", [1, 3])
def test_jpeg_xl_bytes_do_not_depend_on_its_thread_count(effort):
    """The exactness contract if libjxl ever runs with threads (the coder uses one)."""
    frames, _fmt = dicom.read_frames(pydicom.dcmread(sample("CT_small.dcm")))
    image = lossless.to_unsigned(frames[0])[..., 0]
    one, two, four = (bytes(imagecodecs.jpegxl_encode(image, lossless=True, effort=effort, numthreads=n))
                      for n in (1, 2, 4))
    assert one == two == four


def test_the_pipeline_and_the_command_line_carry_the_effort():
    original = pydicom.dcmread(sample("SC_rgb.dcm"))
    key = Key.generate()
    fast = encrypt_instance(original, key=key, effort="fast")
    smallest = encrypt_instance(original, settings=EncryptionSettings.build(key=key, effort="smallest"))
    for sealed in (fast, smallest):
        restored = decrypt_instance(sealed.dataset, keys=key).dataset
        np.testing.assert_array_equal(restored.pixel_array, original.pixel_array)
    assert "wavelet_frames" not in fast.metrics
    args = _setup_argparser().parse_args(["encrypt", "--effort", "smallest", "in", "out"])
    assert args.effort == "smallest"


@pytest.mark.parametrize("effort", ["slow", "", "BALANCED", 3])
def test_an_unknown_effort_is_refused_when_settings_are_built(effort):
    with pytest.raises(InvalidInputError, match="effort"):
        EncryptionSettings.build(key=Key.generate(), effort=effort)
