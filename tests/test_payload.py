"""PayloadMeta: the JSON it writes is what every version wrote, and each bad field is named."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt import dicom
from dicomcrypt.codec.normalise import Normalisation
from dicomcrypt.errors import PayloadFormatError
from dicomcrypt.limits import DecodeLimits
from dicomcrypt.payload import Payload, PayloadMeta

DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def fmt() -> dicom.PixelFormat:
    return dicom.read_frames(pydicom.dcmread(get_testdata_file("CT_small.dcm")))[1]


def _lossless(fmt: dicom.PixelFormat) -> PayloadMeta:
    return PayloadMeta.build(
        pixel_format=fmt, shape=(1, 128, 128, 1), dtype="<i2", normalisation=Normalisation((128,), (2191,)),
        digest=DIGEST, residual_predictor=("none",),
    )


def test_lossless_metadata_is_version_2_and_the_others_version_1(fmt) -> None:
    assert _lossless(fmt).payload_version == 2
    standard = PayloadMeta.build(pixel_format=fmt, shape=(1, 128, 128, 1), dtype=np.int16, digest=DIGEST)
    assert standard.payload_version == 1
    assert set(standard.to_json()) == {"payload_version", "pixel_format", "shape", "dtype", "digest"}


def test_the_json_is_key_for_key_what_earlier_versions_wrote(fmt) -> None:
    written = Payload(_lossless(fmt).to_json()).to_bytes()
    expected = {
        "digest": DIGEST,
        "dtype": "<i2",
        "normalisation": {"high": [2191], "low": [128], "padding": None},
        "payload_version": 2,
        "pixel_format": dataclasses.asdict(fmt),
        "residual_predictor": ["none"],
        "shape": [1, 128, 128, 1],
    }
    assert written == Payload(expected).to_bytes()
    assert PayloadMeta.from_json(expected) == _lossless(fmt)


def test_identity_protected_metadata_carries_the_sequence_digest(fmt) -> None:
    meta = dataclasses.replace(_lossless(fmt), encrypted_attributes_sha256="cd" * 32)
    assert PayloadMeta.from_json(meta.to_json()) == meta
    assert meta.to_json()["encrypted_attributes_sha256"] == "cd" * 32


def test_unknown_keys_are_ignored(fmt) -> None:
    data = _lossless(fmt).to_json() | {"comment": "from a later writer"}
    assert PayloadMeta.from_json(data) == _lossless(fmt)


def _without(name: str):
    return lambda data: data.pop(name)


def _setting(path: str, value: Any):
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = data
        for parent in parents:
            target = target[parent]
        target[last] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_without("payload_version"), "payload_version is missing"),
        (_setting("payload_version", 4), "payload version 4 is not supported"),  # 3 is the wavelet codec's
        (_setting("payload_version", "2"), "payload version '2' is not supported"),
        (_setting("payload_version", True), "payload version True is not supported"),
        (_without("shape"), "shape is missing"),
        (_setting("shape", [1, 128, 128]), "shape must be 4 non-negative integers"),
        (_setting("shape", [1, 128, -1, 1]), "shape must be 4 non-negative integers"),
        (_without("dtype"), "dtype is missing"),
        (_setting("dtype", "int16"), "dtype must be an integer or float NumPy dtype string"),
        (_setting("dtype", "|O"), "dtype must be an integer or float NumPy dtype string"),
        (_setting("dtype", "no such type"), "dtype must be an integer or float NumPy dtype string"),
        (_without("pixel_format"), "pixel_format is missing"),
        (_setting("pixel_format", [1, 2]), "pixel_format must be an object"),
        (_setting("pixel_format.colour", "red"), "pixel_format has unknown fields colour"),
        (_setting("pixel_format.rows", "128"), "pixel_format.rows must be an integer"),
        (_setting("pixel_format.is_palette", 0), "pixel_format.is_palette must be true or false"),
        (_setting("pixel_format.padding_value", 1.5), "pixel_format.padding_value must be an integer or null"),
        (lambda data: data["pixel_format"].pop("rows"), "pixel_format.rows is missing"),
        (_setting("normalisation", [128, 2191]), "normalisation must be an object"),
        (_setting("normalisation.low", [128.0]), "low and high must be integer lists of one length"),
        (_setting("normalisation.high", [2191, 3000]), "low and high must be integer lists of one length"),
        (_setting("normalisation.padding", "-2000"), "normalisation padding must be an integer or null"),
        (_setting("normalisation", {"low": [1, 2], "high": [3, 4]}), "has 2 ranges, the image has 1 frames"),
        (_setting("digest", 12), "digest must be a SHA-256 as 64 lowercase hex characters"),
        (_setting("digest", "AB" * 32), "digest must be a SHA-256 as 64 lowercase hex characters"),
        (_setting("encrypted_attributes_sha256", "cd"), "encrypted_attributes_sha256 must be a SHA-256"),
        (_setting("residual_predictor", "none"), "residual_predictor must be a list of names"),
        (_setting("residual_predictor", [1]), "residual_predictor must be a list of names"),
        (_setting("payload_version", 1), "residual_predictor in a version 1 payload"),
    ],
)
def test_each_bad_field_is_named(edit, message, fmt) -> None:
    data = copy.deepcopy(_lossless(fmt).to_json())
    edit(data)
    with pytest.raises(PayloadFormatError, match=re.escape(message)):
        PayloadMeta.from_json(data)


def test_metadata_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(PayloadFormatError, match="metadata is not a JSON object"):
        PayloadMeta.from_json([1, 2])


# -- untrusted metadata: consistency and limits, checked before anything is allocated (issue 12) --


def _standard_json(fmt: dicom.PixelFormat) -> dict[str, Any]:
    return PayloadMeta.build(pixel_format=fmt, shape=(1, 128, 128, 1), dtype="<i2", digest=DIGEST).to_json()


def _declaring(fmt: dicom.PixelFormat, shape: tuple[int, int, int, int]) -> dict[str, Any]:
    data = _standard_json(fmt)
    frames, rows, columns, samples = shape
    data["shape"] = list(shape)
    data["pixel_format"].update(frames=frames, rows=rows, columns=columns, samples_per_pixel=samples)
    return data


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(shape=[1, 128, 129, 1]), "does not match pixel_format"),
    (lambda d: d["pixel_format"].update(frames=2), "does not match pixel_format"),
    (lambda d: d.update(dtype="<u2"), "dtype <u2 does not match pixel_format"),
    (lambda d: d.update(dtype="<i4"), "does not match pixel_format"),
    (lambda d: d["pixel_format"].update(bits_allocated=24), "does not match pixel_format"),
    (lambda d: d["pixel_format"].update(bits_stored=17), "bits_stored 17 is not between 1 and bits_allocated 16"),
    (lambda d: d.update(shape=[0, 128, 128, 1]) or d["pixel_format"].update(frames=0), "empty dimension"),
])
def test_shape_dtype_and_pixel_format_must_describe_one_image(edit, message, fmt) -> None:
    data = _standard_json(fmt)
    edit(data)
    with pytest.raises(PayloadFormatError, match=re.escape(message)):
        PayloadMeta.from_json(data)


@pytest.mark.parametrize(("shape", "limits", "message"), [
    ((1, 100_000, 100_000, 1), DecodeLimits(), "100000 x 100000 pixels per frame, the limit is 67108864"),
    ((20_000, 16, 16, 1), DecodeLimits(), "declares 20000 frames, the limit is 10000"),
    ((12, 8192, 8192, 1), DecodeLimits(), "declares 1610612736 bytes of pixels (12 x 8192 x 8192 x 1 x 2), the limit "
                                          "is 1073741824 bytes"),
    ((1, 128, 128, 1), DecodeLimits(max_pixel_bytes=1000), "declares 32768 bytes of pixels"),
])
def test_a_declared_image_over_the_limits_is_refused_naming_both(shape, limits, message, fmt) -> None:
    with pytest.raises(PayloadFormatError, match=re.escape(message)):
        PayloadMeta.from_json(_declaring(fmt, shape), limits)


def test_the_default_limits_pass_the_largest_real_images(fmt) -> None:
    """A 4096 x 3328 mammogram, a 1955 x 1841 RGB radiograph, 400 CT slices of 512 x 512."""
    for shape in [(1, 4096, 3328, 1), (1, 1955, 1841, 3), (400, 512, 512, 1)]:
        assert PayloadMeta.from_json(_declaring(fmt, shape)).shape == shape


def test_normalisation_values_must_fit_the_pixel_type(fmt) -> None:
    data = _lossless(fmt).to_json()
    data["normalisation"]["high"] = [2**200]
    with pytest.raises(PayloadFormatError, match="outside the range of <i2 pixels"):
        PayloadMeta.from_json(data)


def test_metadata_larger_than_the_limit_is_refused_before_parsing(fmt) -> None:
    blob = Payload(_standard_json(fmt), {"pixels": b""}).to_bytes()
    with pytest.raises(PayloadFormatError, match=r"metadata declares \d+ bytes, the limit is 100"):
        Payload.from_bytes(blob, DecodeLimits(max_metadata_bytes=100))
    huge_length = blob[:4] + (2**32 - 1).to_bytes(4, "big") + blob[8:]
    with pytest.raises(PayloadFormatError, match="metadata declares 4294967295 bytes"):
        Payload.from_bytes(huge_length)


@pytest.mark.parametrize("depth", [9, 100, 100_000])
def test_deeply_nested_metadata_is_refused(depth) -> None:
    meta = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    blob = b"DCP1" + len(meta).to_bytes(4, "big") + meta + b"\x00"
    with pytest.raises(PayloadFormatError, match="nested"):
        Payload.from_bytes(blob)


def test_metadata_that_is_not_utf8_is_refused() -> None:
    blob = b"DCP1" + (2).to_bytes(4, "big") + b"\xff\xfe" + b"\x00"
    with pytest.raises(PayloadFormatError, match="not JSON"):
        Payload.from_bytes(blob)
