"""Lossless coding of integer image frames: JPEG-LS first, zstd when JPEG-LS cannot.

Both the lossless residual and the ``standard`` mode (the paper's "AES without the
autoencoder" baseline) store integer frames exactly. JPEG-LS (CharLS, via pyjpegls) is the
standard lossless codec for medical images and beats general-purpose compressors on them
(design.md: 100 KB against zstd-19's 173 KB on a 512x512 CT). CharLS refuses some inputs
(tiny or incompressible frames overflow its output buffer) and takes only unsigned 2..16 bit
samples, so every frame records which codec it used and zstd takes the rest; signed samples
go in as offset binary (:func:`to_unsigned`, an exact and invertible shift).

Blob layout (all integers big-endian)::

    u32 frame count
    per frame: u8 codec (1 = JPEG-LS, 2 = zstd), u32 length, codestream

Decoding trusts nothing in the blob: the caller's shape and dtype (checked against the decode
limits with the payload metadata) fix what each frame must be, and each codestream's own
declaration is checked against them before the codec runs: a JPEG-LS frame header (SOF-55)
must state exactly the frame's height, width, components and at most the dtype's bits; a zstd
frame must declare exactly the frame's byte count and is inflated with that as the bound.
"""

from __future__ import annotations

import struct

import numpy as np
from numpy.typing import DTypeLike

from dicomcrypt.errors import PayloadFormatError

JPEG_LS = 1
ZSTD = 2
_ZSTD_LEVEL = 9
_HEADER = struct.Struct(">I")
_FRAME_HEADER = struct.Struct(">BI")
_MARKER = struct.Struct(">BBH")  # 0xFF, marker code, segment length (including itself)
_SOF55 = struct.Struct(">BHHB")  # precision, lines, samples per line, components
_SOI, _SOF_JPEG_LS = 0xD8, 0xF7


def encode_frames(frames: np.ndarray) -> bytes:
    """Code ``(F, H, W, C)`` integer frames losslessly; the caller keeps shape and dtype."""
    return pack_records([encode_record(frame) for frame in frames])


def encode_record(frame: np.ndarray) -> bytes:
    """One frame's record (codec, length, codestream): lets a caller compare codings per frame."""
    return record(*_encode_frame(frame))


def record(codec: int, data: bytes) -> bytes:
    """One frame's record in the blob layout above; other codecs (the wavelet coder's) use it too."""
    return _FRAME_HEADER.pack(codec, len(data)) + data


def pack_records(records: list[bytes]) -> bytes:
    """The blob :func:`decode_frames` reads, from :func:`encode_record` records in frame order."""
    return _HEADER.pack(len(records)) + b"".join(records)


def split_records(blob: bytes, frames: int) -> list[tuple[int, bytes]]:
    """``(codec, codestream)`` per frame of a blob that must hold exactly ``frames`` records and
    nothing after them; every length is checked against the blob before it is used."""
    view = memoryview(blob)
    if len(view) < _HEADER.size:
        raise PayloadFormatError("coded frames: truncated header")
    (count,) = _HEADER.unpack_from(view, 0)
    if count != frames:
        raise PayloadFormatError(f"coded frames: {count} frames stored, {frames} expected")
    records = []
    offset = _HEADER.size
    for index in range(count):
        if offset + _FRAME_HEADER.size > len(view):
            raise PayloadFormatError(f"coded frames: frame {index} header truncated")
        codec, length = _FRAME_HEADER.unpack_from(view, offset)
        offset += _FRAME_HEADER.size
        if offset + length > len(view):
            raise PayloadFormatError(f"coded frames: frame {index} data truncated")
        records.append((codec, bytes(view[offset : offset + length])))
        offset += length
    if offset != len(view):
        raise PayloadFormatError("coded frames: trailing bytes")
    return records


def decode_frames(blob: bytes, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    """Inverse of :func:`encode_frames`; ``shape`` is ``(F, H, W, C)``."""
    dtype = np.dtype(dtype)
    out = np.empty(shape, dtype=dtype)
    for index, (codec, data) in enumerate(split_records(blob, shape[0])):
        out[index] = decode_record(codec, data, shape[1:], dtype)
    return out


def stored_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the coded frames hold: unsigned of the same width for signed data, else ``dtype``."""
    dtype = np.dtype(dtype)
    return np.dtype(f"u{dtype.itemsize}") if dtype.kind == "i" else dtype


def to_unsigned(frames: np.ndarray) -> np.ndarray:
    """Signed samples as offset binary (exact, invertible); other dtypes unchanged."""
    if frames.dtype.kind != "i":
        return frames
    unsigned = stored_dtype(frames.dtype)
    # Flipping the sign bit maps two's complement onto offset binary: -32768 -> 0, 0 -> 32768.
    return frames.view(unsigned) ^ _sign_bit(unsigned)


def from_unsigned(stored: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`to_unsigned` for original ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind != "i":
        return stored
    return (stored ^ _sign_bit(stored.dtype)).view(dtype)


def _sign_bit(unsigned: np.dtype) -> np.unsignedinteger:
    return unsigned.type(1 << (8 * unsigned.itemsize - 1))


def _encode_frame(frame: np.ndarray) -> tuple[int, bytes]:
    raw = np.ascontiguousarray(frame)
    if _jpeg_ls_can_take(raw):
        try:
            return JPEG_LS, _encode_jpeg_ls(raw)
        except RuntimeError:
            pass  # CharLS overflows its buffer on tiny or incompressible frames
    return ZSTD, _encode_zstd(raw)


def _jpeg_ls_can_take(frame: np.ndarray) -> bool:
    return frame.dtype in (np.uint8, np.uint16) and frame.shape[-1] in (1, 3) and min(frame.shape[:2]) >= 2


def _encode_jpeg_ls(frame: np.ndarray) -> bytes:
    import jpeg_ls

    if frame.shape[-1] == 1:
        return bytes(jpeg_ls.encode_array(frame[..., 0]))
    return bytes(jpeg_ls.encode_array(frame, interleave_mode=2))


def _encode_zstd(frame: np.ndarray) -> bytes:
    import zstandard

    # Byte planes (all low bytes, then all high bytes) compress better than interleaved words.
    little = frame.astype(frame.dtype.newbyteorder("<"), copy=False)
    planes = little.view(np.uint8).reshape(-1, frame.dtype.itemsize).T
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(np.ascontiguousarray(planes).tobytes())


def decode_record(codec: int, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """One JPEG-LS or zstd codestream of ``shape``/``dtype`` (its declaration checked first)."""
    if codec == JPEG_LS:
        return _decode_jpeg_ls(data, shape, dtype)
    if codec == ZSTD:
        return _decode_zstd(data, shape, dtype)
    raise PayloadFormatError(f"coded frames: unknown codec {codec}")


def _decode_jpeg_ls(data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    import jpeg_ls

    _check_jpeg_ls_header(data, shape, dtype)
    try:
        decoded = jpeg_ls.decode(np.frombuffer(data, dtype=np.uint8))
    except Exception as exc:  # CharLS raises RuntimeError with its own text
        raise PayloadFormatError(f"coded frames: JPEG-LS codestream does not decode ({exc})") from exc
    if decoded.size != int(np.prod(shape)):
        raise PayloadFormatError("coded frames: JPEG-LS frame has the wrong size")
    return decoded.reshape(shape).astype(dtype, copy=False)


def _check_jpeg_ls_header(data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """The codestream's frame header states the frame we expect, read before CharLS allocates for it."""
    height, width, components = shape
    precision, lines, columns, count = _jpeg_ls_frame_header(data)
    if (lines, columns, count) != (height, width, components) or not 2 <= precision <= 8 * dtype.itemsize:
        raise PayloadFormatError(
            f"coded frames: JPEG-LS codestream declares {lines} x {columns} x {count} at {precision} bits, "
            f"the payload declares {height} x {width} x {components} {dtype.str}"
        )
    if dtype not in (np.uint8, np.uint16):
        raise PayloadFormatError(f"coded frames: a JPEG-LS frame for {dtype.str} pixels (JPEG-LS codes 2..16 bits)")


def _jpeg_ls_frame_header(data: bytes) -> tuple[int, int, int, int]:
    """(precision, lines, samples per line, components) of the SOF-55 segment (ITU-T T.87 C.2.2)."""
    if data[:2] != bytes((0xFF, _SOI)):
        raise PayloadFormatError("coded frames: JPEG-LS codestream does not start with SOI")
    offset = 2
    while offset + _MARKER.size <= len(data):
        prefix, code, length = _MARKER.unpack_from(data, offset)
        if prefix != 0xFF or length < 2:
            break
        if code == _SOF_JPEG_LS:
            if length < 2 + _SOF55.size or offset + 4 + _SOF55.size > len(data):
                break
            precision, lines, columns, count = _SOF55.unpack_from(data, offset + 4)
            return precision, lines, columns, count
        offset += 2 + length
    raise PayloadFormatError("coded frames: JPEG-LS codestream has no readable frame header (SOF-55)")


def _decode_zstd(data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    import zstandard

    itemsize = dtype.itemsize
    expected = int(np.prod(shape)) * itemsize
    try:
        declared = zstandard.get_frame_parameters(data).content_size
        if declared != expected:
            said = "no size" if declared == zstandard.CONTENTSIZE_UNKNOWN else f"{declared} bytes"
            raise PayloadFormatError(f"coded frames: zstd frame declares {said}, the frame is {expected} bytes")
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise PayloadFormatError(f"coded frames: zstd data does not decode ({exc})") from exc
    if len(raw) != expected:
        raise PayloadFormatError("coded frames: zstd frame has the wrong size")
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(itemsize, -1).T
    little = np.ascontiguousarray(planes).view(dtype.newbyteorder("<"))
    return little.reshape(shape).astype(dtype, copy=False)
