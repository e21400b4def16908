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
        (_setting("payload_version", 3), "payload version 3 is not supported"),
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
