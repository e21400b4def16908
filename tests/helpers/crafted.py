"""Sealed, crafted payloads: what anyone who knows a public recipient string can send.

A valid envelope needs no secret for a public recipient, so these build *authenticated*
instances whose payload says whatever the test wants: the envelope layer lets them through
and the payload parser and coders must refuse them. Used by the fuzz target
(tests/fuzz/test_payload_fuzz.py) and the memory-limited bomb tests (tests/fuzz/bombs.py runs
in a subprocess); also runnable against an older checkout, to measure it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import struct
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from dicomcrypt import dicom
from dicomcrypt.crypto import Key
from dicomcrypt.envelope import instance_binding, open_envelope, read_header, seal
from dicomcrypt.payload import Payload

KEY = Key.from_bytes(bytes(range(32)))
"""The test recipient's key: stands in for a public recipient (sealing needs no secret)."""


@dataclasses.dataclass(frozen=True)
class Template:
    """A real encrypted instance and its opened payload, to be altered and sealed again."""

    dataset: Dataset
    meta: dict[str, Any]
    sections: dict[str, bytes]


@functools.cache
def template(mode: str, name: str = "CT_small.dcm", model: str | None = None) -> Template:
    """``name`` from pydicom's test files encrypted in ``mode`` with :data:`KEY` (and ``model``;
    None: the default codec), and its payload."""
    from dicomcrypt.pipeline import encrypt_instance

    ds = pydicom.dcmread(get_testdata_file(name))
    encrypted = encrypt_instance(ds, key=KEY, mode=mode, model=model).dataset
    info = dicom.read_private_block(encrypted)
    assert info is not None
    _, plaintext = open_envelope(info.envelope, keys=KEY, binding=instance_binding(*dicom.uids(encrypted)))
    payload = Payload.from_bytes(plaintext)
    return Template(encrypted, payload.meta, payload.sections)


def sealed(base: Template, plaintext: bytes) -> Dataset:
    """``base``'s instance with ``plaintext`` sealed in its envelope (same mode, model, binding)."""
    ds = copy.deepcopy(base.dataset)
    info = dicom.read_private_block(ds)
    assert info is not None
    header = read_header(info.envelope)
    envelope = seal(
        plaintext, key=KEY, mode=header.mode, model_id=header.model_id, model_sha256=header.model_sha256,
        binding=instance_binding(*dicom.uids(ds)),
    )
    dicom.write_private_block(ds, dataclasses.replace(info, envelope=envelope))
    return ds


def payload(meta: dict[str, Any], sections: dict[str, bytes]) -> bytes:
    """A payload with ``meta`` as its JSON, written as the real writer writes it."""
    return Payload(meta, sections).to_bytes()


def crafted(mode: str, meta: dict[str, Any], sections: dict[str, bytes]) -> Dataset:
    """An authenticated instance of ``mode`` whose payload is ``meta`` and ``sections``."""
    return sealed(template(mode), payload(meta, sections))


def with_shape(meta: dict[str, Any], shape: tuple[int, int, int, int]) -> dict[str, Any]:
    """``meta`` declaring ``shape``, its pixel format made consistent with it."""
    frames, rows, columns, samples = shape
    out = json.loads(json.dumps(meta))
    out["shape"] = list(shape)
    out["pixel_format"].update(frames=frames, rows=rows, columns=columns, samples_per_pixel=samples)
    if "normalisation" in out:
        norm = out["normalisation"]
        out["normalisation"] = {**norm, "low": norm["low"][:1] * frames, "high": norm["high"][:1] * frames}
    if "residual_predictor" in out:
        out["residual_predictor"] = ["decoder"] * frames
    return out


# -- the bombs of issue 12 ---------------------------------------------------------------------


def _zstd_zeros(size: int, *, content_size: bool = True) -> bytes:
    """``size`` zero bytes as one zstd frame, compressed in chunks (little memory)."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    chunk = bytes(min(size, 1 << 24))
    if content_size:
        writer = compressor.compressobj(size=size)
    else:
        writer = compressor.compressobj()
    parts = []
    left = size
    while left:
        take = min(left, len(chunk))
        parts.append(writer.compress(chunk[:take]))
        left -= take
    parts.append(writer.flush())
    return b"".join(parts)


def _records(records: list[tuple[int, bytes]]) -> bytes:
    """A coded-frames blob (codec.lossless layout) from (codec, codestream) records."""
    return struct.pack(">I", len(records)) + b"".join(struct.pack(">BI", c, len(d)) + d for c, d in records)


def huge_shape(frames: int = 12, rows: int = 8192, columns: int = 8192) -> Dataset:
    """Standard mode: a small payload declaring ``frames`` x ``rows`` x ``columns`` 16-bit
    pixels (1.5 GiB by default), every frame a tiny zstd frame of zeros."""
    base = template("standard")
    frame = _zstd_zeros(rows * columns * 2)
    return crafted("standard", with_shape(base.meta, (frames, rows, columns, 1)),
                   {**base.sections, "pixels": _records([(2, frame)] * frames)})


def jpeg_ls_patched_height(lines: int = 30000, columns: int = 30000) -> Dataset:
    """Standard mode: the real JPEG-LS codestream with its frame header patched to ``lines`` x ``columns``."""
    base = template("standard")
    blob = bytearray(base.sections["pixels"])
    sof = blob.index(b"\xff\xf7")
    struct.pack_into(">HH", blob, sof + 5, lines, columns)
    return crafted("standard", base.meta, {**base.sections, "pixels": bytes(blob)})


def zstd_bomb(size: int = 1 << 30) -> Dataset:
    """Standard mode: a frame record holding ``size`` bytes of zeros in a zstd frame that does
    not declare its size (the decompressor cannot know it in advance)."""
    base = template("standard")
    pixels = _records([(2, _zstd_zeros(size, content_size=False))])
    return crafted("standard", base.meta, {**base.sections, "pixels": pixels})


def _latent(frames: int, height: int, width: int, channels: int, factor: int) -> bytes:
    """A u8 latent of zeros with its header; built from the header layout, no model run."""
    from dicomcrypt.codec import latent

    lat_h, lat_w = -(-height // factor), -(-width // factor)
    header = struct.pack(">4sBBBIIIHIII", latent.MAGIC, 1, 1, factor, frames, lat_h, lat_w, channels,
                         height, width, 256)
    params = struct.pack(">ff", 0.0, 0.0) * (frames * channels)
    return header + params + _zstd_zeros(frames * channels * lat_h * lat_w)


def _autoencoder_template() -> Template:
    """The lossy template of the default grey autoencoder: the latent bombs target its decoder."""
    from dicomcrypt.codec.registry import DEFAULT_MODELS

    return template("lossy", model=DEFAULT_MODELS[1])


def _model_geometry() -> tuple[int, int]:
    """(factor, latent channels) of the grey autoencoder the lossy bombs name."""
    from dicomcrypt.codec.registry import load_model

    info = load_model(None, channels=1).info
    return info.factor, info.latent_channels


def latent_near_max() -> Dataset:
    """Lossy mode: the payload's image is CT_small, the latent declares close to the old
    ``MAX_SAMPLES`` (2**31) samples of a 1-frame image: gigabytes once inflated and dequantised."""
    base = _autoencoder_template()
    factor, channels = _model_geometry()
    side = int((2**31 // channels) ** 0.5) * factor - factor
    return crafted("lossy", base.meta, {**base.sections, "latent": _latent(1, side, side, channels, factor)})


def many_frames_lossy(frames: int = 8000, size: int = 80, *, declared_frames: int | None = None) -> Dataset:
    """Lossy mode: ``frames`` frames of ``size`` x ``size`` in a latent of zeros (a few kB).

    ``declared_frames``: what the metadata says (default: the same); fewer makes the latent
    disagree with the payload, which the old code noticed only after decoding it all.
    """
    base = _autoencoder_template()
    factor, channels = _model_geometry()
    shown = frames if declared_frames is None else declared_frames
    meta = with_shape(base.meta, (shown, size, size, 1))
    return crafted("lossy", meta, {"attributes": base.sections["attributes"],
                                   "latent": _latent(frames, size, size, channels, factor)})


BOMBS = {
    "huge-shape": huge_shape,
    "jpeg-ls-height": jpeg_ls_patched_height,
    "zstd-bomb": zstd_bomb,
    "latent-near-max": latent_near_max,
    "many-frames-lossy": many_frames_lossy,
    "many-frames-lossy-mismatch": lambda: many_frames_lossy(2000, declared_frames=1),
}
