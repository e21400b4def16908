"""The plaintext that an envelope encrypts: JSON metadata plus named binary sections.

The metadata says how to rebuild the pixels (mode, model, pixel format, normalisation, digest
of the original pixels); the sections hold the bytes (quantised latent, residual, standard-coded
pixels, the snapshot of the attributes the placeholder replaced). Everything here is inside the
AES-GCM ciphertext, so it is authenticated before it is parsed, but authenticated is not trusted:
a valid envelope for a public recipient needs no secret, so whoever knows a node's ``dcrecip1...``
string can seal any payload for it. The metadata is therefore checked like any hostile input:
bounded in size and depth, every field typed, the declared shape, dtype and pixel format
consistent with each other and within :class:`~dicomcrypt.limits.DecodeLimits`, all before a
single pixel is allocated (docs/format.md, "What is checked before allocating").

The metadata is typed by :class:`PayloadMeta`: :meth:`PayloadMeta.to_json` writes exactly the
JSON earlier versions wrote, and :meth:`PayloadMeta.from_json` checks every field with a
message that names it. :class:`Payload` keeps the metadata as the JSON object it is on the
wire, so the byte layout is one concern and the meaning of the fields another.

Layout (integers big-endian)::

    4 bytes  magic b"DCP1"
    u32      length of the metadata, then the metadata (UTF-8 JSON object)
    u8       number of sections; per section: u8 name length, ASCII name, u64 length, bytes
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import struct
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dicomcrypt.codec.normalise import Normalisation
from dicomcrypt.dicom import PixelFormat
from dicomcrypt.errors import PayloadFormatError
from dicomcrypt.limits import DEFAULT_LIMITS, DecodeLimits

MAGIC = b"DCP1"
SECTIONS = frozenset({"latent", "residual", "pixels", "attributes", "padding"})
# Version 2 adds residual_predictor. Only lossless payloads need it, so payloads without it are
# still written as version 1, which older readers open. Version 3 adds codec (the wavelet codec's
# payloads: docs/format.md, "Wavelet payload").
VERSION = 1
PREDICTOR_VERSION = 2
CODEC_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
CODECS = ("wavelet",)

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


@dataclass
class Payload:
    """Metadata and sections of one encrypted instance."""

    meta: dict[str, Any]
    sections: dict[str, bytes] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        unknown = set(self.sections) - SECTIONS
        if unknown:
            raise ValueError(f"unknown payload sections: {sorted(unknown)}")
        meta = json.dumps(self.meta, sort_keys=True, separators=(",", ":")).encode()
        parts = [MAGIC, _U32.pack(len(meta)), meta, bytes([len(self.sections)])]
        for name, data in sorted(self.sections.items()):
            parts += [bytes([len(name)]), name.encode("ascii"), _U64.pack(len(data)), data]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Payload:
        """Parse the layout; the metadata is bounded by ``limits`` (size, nesting) before and while parsing."""
        reader = _Reader(blob)
        if reader.take(4) != MAGIC:
            raise PayloadFormatError("payload: bad magic (not a dicomcrypt payload v1)")
        meta_length = reader.unpack(_U32)
        if meta_length > limits.max_metadata_bytes:
            raise PayloadFormatError(
                f"payload: metadata declares {meta_length} bytes, the limit is {limits.max_metadata_bytes}"
            )
        meta = _parse_metadata(reader.take(meta_length), limits.max_metadata_depth)
        sections: dict[str, bytes] = {}
        for _ in range(reader.take(1)[0]):
            name = reader.take(reader.take(1)[0]).decode("ascii", "replace")
            if name not in SECTIONS or name in sections:
                raise PayloadFormatError(f"payload: unexpected section {name!r}")
            sections[name] = reader.take(reader.unpack(_U64))
        if not reader.at_end():
            raise PayloadFormatError("payload: trailing bytes")
        return cls(meta, sections)

    def section(self, name: str) -> bytes:
        return section(self.sections, name)


def section(sections: Mapping[str, bytes], name: str) -> bytes:
    """The section ``name``, or the payload error that says it is missing."""
    try:
        return sections[name]
    except KeyError:
        raise PayloadFormatError(f"payload: section {name!r} is missing") from None


@dataclass(frozen=True)
class PayloadMeta:
    """What the receiver needs to rebuild the pixels and check them (docs/format.md, "Payload").

    Optional fields are None when a mode does not use them, and are then absent from the JSON:
    ``normalisation`` (model modes), ``digest`` (exact modes), ``residual_predictor`` (lossless,
    version 2), ``encrypted_attributes_sha256`` (identity protection). Build new metadata with
    :meth:`build`, which picks the version.
    """

    payload_version: int
    pixel_format: PixelFormat
    shape: tuple[int, ...]
    dtype: np.dtype
    normalisation: Normalisation | None = None
    digest: str | None = None
    residual_predictor: tuple[str, ...] | None = None
    encrypted_attributes_sha256: str | None = None
    codec: str | None = None  # version 3: the payload is this codec's (sections "pixels", "padding")

    @classmethod
    def build(
        cls, *, pixel_format: PixelFormat, shape: tuple[int, ...], dtype: np.dtype | str, **optional: Any
    ) -> PayloadMeta:
        """New metadata at the lowest version that holds its fields, so older readers open it."""
        version = PREDICTOR_VERSION if optional.get("residual_predictor") is not None else VERSION
        if optional.get("codec") is not None:
            version = CODEC_VERSION
        return cls(version, pixel_format, tuple(int(n) for n in shape), np.dtype(dtype), **optional)

    def to_json(self) -> dict[str, Any]:
        """The metadata JSON object, key for key as every version of dicomcrypt wrote it."""
        data: dict[str, Any] = {
            "payload_version": self.payload_version,
            "pixel_format": dataclasses.asdict(self.pixel_format),
            "shape": list(self.shape),
            "dtype": self.dtype.str,
        }
        optional = {
            "normalisation": None if self.normalisation is None else self.normalisation.to_json(),
            "digest": self.digest,
            "residual_predictor": None if self.residual_predictor is None else list(self.residual_predictor),
            "encrypted_attributes_sha256": self.encrypted_attributes_sha256,
            "codec": self.codec,
        }
        data.update({name: value for name, value in optional.items() if value is not None})
        return data

    @classmethod
    def from_json(cls, data: object, limits: DecodeLimits = DEFAULT_LIMITS) -> PayloadMeta:
        """Check and type the metadata; PayloadFormatError names the first bad field.

        Unknown keys are ignored (tolerant when reading); every known one must have its type.
        Shape, dtype and pixel format must describe the same image, and that image must be
        within ``limits``: what the coders then allocate follows from the shape and dtype.
        """
        if not isinstance(data, dict):
            raise PayloadFormatError("payload: metadata is not a JSON object")
        version = _version(data)
        shape = _shape(_required(data, "shape"))
        pixel_format = _pixel_format(_required(data, "pixel_format"))
        dtype = _dtype(_required(data, "dtype"))
        _check_geometry(shape, dtype, pixel_format)
        _check_limits(shape, dtype, limits)
        normalisation = data.get("normalisation")
        return cls(
            payload_version=version,
            pixel_format=pixel_format,
            shape=shape,
            dtype=dtype,
            normalisation=None if normalisation is None else _normalisation(normalisation, shape[0], dtype),
            digest=_sha256_hex(data, "digest"),
            residual_predictor=_predictors(data, version),
            encrypted_attributes_sha256=_sha256_hex(data, "encrypted_attributes_sha256"),
            codec=_codec(data, version),
        )


_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


def _parse_metadata(meta_bytes: bytes, max_depth: int) -> dict[str, Any]:
    """The metadata object; deeper nesting than ``max_depth`` is refused (json recurses)."""
    try:
        meta = json.loads(meta_bytes)
    except RecursionError:
        raise PayloadFormatError("payload: metadata is nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise PayloadFormatError("payload: metadata is not JSON") from exc
    if not isinstance(meta, dict):
        raise PayloadFormatError("payload: metadata is not a JSON object")
    depth = _depth(meta)
    if depth > max_depth:
        raise PayloadFormatError(f"payload: metadata is nested {depth} deep, the limit is {max_depth}")
    return meta


def _depth(value: object) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _check_geometry(shape: tuple[int, ...], dtype: np.dtype, fmt: PixelFormat) -> None:
    """Shape, dtype and pixel format describe one image (as :func:`dicomcrypt.dicom.read_frames` makes them)."""
    described = (fmt.frames, fmt.rows, fmt.columns, fmt.samples_per_pixel)
    if tuple(shape) != described:
        raise PayloadFormatError(
            f"payload: shape {list(shape)} does not match pixel_format (frames, rows, columns, samples) "
            f"{list(described)}"
        )
    if min(shape) < 1:
        raise PayloadFormatError(f"payload: shape {list(shape)} has an empty dimension")
    if not 1 <= fmt.bits_stored <= fmt.bits_allocated:
        raise PayloadFormatError(
            f"payload: pixel_format bits_stored {fmt.bits_stored} is not between 1 and bits_allocated "
            f"{fmt.bits_allocated}"
        )
    if fmt.bits_allocated not in (1, 8, 16, 32, 64) or dtype.newbyteorder("=") != fmt.dtype:
        raise PayloadFormatError(
            f"payload: dtype {dtype.str} does not match pixel_format (bits_allocated {fmt.bits_allocated}, "
            f"pixel_representation {fmt.pixel_representation}, float {fmt.is_float}, 1-bit {fmt.is_single_bit})"
        )


def _check_limits(shape: tuple[int, ...], dtype: np.dtype, limits: DecodeLimits) -> None:
    """The declared image is within the receiver's limits (checked before anything is allocated)."""
    frames, rows, columns, samples = shape
    if rows * columns > limits.max_frame_pixels:
        raise PayloadFormatError(
            f"payload declares {rows} x {columns} pixels per frame, the limit is {limits.max_frame_pixels} pixels"
        )
    if frames > limits.max_frames:
        raise PayloadFormatError(f"payload declares {frames} frames, the limit is {limits.max_frames}")
    size = frames * rows * columns * samples * dtype.itemsize
    if size > limits.max_pixel_bytes:
        raise PayloadFormatError(
            f"payload declares {size} bytes of pixels ({frames} x {rows} x {columns} x {samples} x "
            f"{dtype.itemsize}), the limit is {limits.max_pixel_bytes} bytes"
        )


def _required(data: dict[str, Any], name: str) -> Any:
    if name not in data:
        raise PayloadFormatError(f"payload: {name} is missing")
    return data[name]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _version(data: dict[str, Any]) -> int:
    version = _required(data, "payload_version")
    if not _is_int(version) or version not in READABLE_VERSIONS:
        raise PayloadFormatError(f"payload version {version!r} is not supported")
    return int(version)


def _shape(value: object) -> tuple[int, ...]:
    if not (isinstance(value, list) and len(value) == 4 and all(_is_int(n) and n >= 0 for n in value)):
        raise PayloadFormatError(
            f"payload: shape must be 4 non-negative integers (frames, rows, columns, samples), not {value!r}"
        )
    return tuple(value)


def _dtype(value: object) -> np.dtype:
    try:
        dtype = np.dtype(value) if isinstance(value, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "iuf" or dtype.str != value:
        raise PayloadFormatError(
            f"payload: dtype must be an integer or float NumPy dtype string such as '<i2', not {value!r}"
        )
    return dtype


@functools.cache
def _pixel_format_hints() -> dict[str, Any]:
    """PixelFormat's field types, resolved once: get_type_hints compiles every string annotation
    again on each call (0.3 ms, per restored instance)."""
    return typing.get_type_hints(PixelFormat)


def _pixel_format(value: object) -> PixelFormat:
    if not isinstance(value, dict):
        raise PayloadFormatError(f"payload: pixel_format must be an object, not {value!r}")
    hints = _pixel_format_hints()
    unknown = sorted(set(value) - set(hints))
    if unknown:
        raise PayloadFormatError(f"payload: pixel_format has unknown fields {', '.join(unknown)}")
    for spec in dataclasses.fields(PixelFormat):
        if spec.name not in value:
            if spec.default is dataclasses.MISSING:
                raise PayloadFormatError(f"payload: pixel_format.{spec.name} is missing")
        elif not _has_type(value[spec.name], hints[spec.name]):
            kind = _type_name(hints[spec.name])
            raise PayloadFormatError(f"payload: pixel_format.{spec.name} must be {kind}, not {value[spec.name]!r}")
    return PixelFormat(**value)


def _has_type(value: object, hint: Any) -> bool:
    """``value`` is of ``hint``: int, str, bool, or a union of them with None."""
    if hint is type(None):
        return value is None
    if hint is int:
        return _is_int(value)
    if hint in (str, bool):
        return isinstance(value, hint)
    return any(_has_type(value, option) for option in typing.get_args(hint))


def _type_name(hint: Any) -> str:
    names = {int: "an integer", str: "a string", bool: "true or false", type(None): "null"}
    return " or ".join(names[option] for option in (typing.get_args(hint) or (hint,)))


def _normalisation(value: object, frames: int, dtype: np.dtype) -> Normalisation:
    norm = Normalisation.from_json(value)
    if len(norm.low) != frames:
        raise PayloadFormatError(f"payload: normalisation has {len(norm.low)} ranges, the image has {frames} frames")
    if dtype.kind not in "iu":
        raise PayloadFormatError(f"payload: normalisation of {dtype.str} pixels (model modes code integers)")
    info = np.iinfo(dtype)
    values = [*norm.low, *norm.high, *(() if norm.padding is None else (norm.padding,))]
    if values and not info.min <= min(values) <= max(values) <= info.max:
        raise PayloadFormatError(f"payload: normalisation values outside the range of {dtype.str} pixels")
    return norm


def _sha256_hex(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not (isinstance(value, str) and _HEX_SHA256.fullmatch(value)):
        raise PayloadFormatError(f"payload: {name} must be a SHA-256 as 64 lowercase hex characters, not {value!r}")
    return value


def _codec(data: dict[str, Any], version: int) -> str | None:
    """Version 3 names its codec; earlier versions have none."""
    value = data.get("codec")
    if version < CODEC_VERSION:
        if value is not None:
            raise PayloadFormatError(f"payload: codec in a version {version} payload")
        return None
    if value not in CODECS:
        raise PayloadFormatError(f"payload: codec must be one of {', '.join(CODECS)}, not {value!r}")
    return str(value)


def _predictors(data: dict[str, Any], version: int) -> tuple[str, ...] | None:
    """Checked for form here; the lossless coder checks the names against the frame count."""
    value = data.get("residual_predictor")
    if value is None:
        return None
    if version == 1:
        raise PayloadFormatError("payload: residual_predictor in a version 1 payload")
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise PayloadFormatError(f"payload: residual_predictor must be a list of names, not {value!r}")
    return tuple(value)


class _Reader:
    def __init__(self, blob: bytes) -> None:
        self._view = memoryview(blob)
        self._offset = 0

    def take(self, length: int) -> bytes:
        end = self._offset + length
        if end > len(self._view):
            raise PayloadFormatError("payload: truncated")
        chunk = bytes(self._view[self._offset : end])
        self._offset = end
        return chunk

    def unpack(self, fmt: struct.Struct) -> int:
        return fmt.unpack(self.take(fmt.size))[0]

    def at_end(self) -> bool:
        return self._offset == len(self._view)
