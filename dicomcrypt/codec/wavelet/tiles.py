"""Large frames as independent tiles, so the wavelet codec's memory is bounded by the tile.

A frame's transform, context planes and entropy-coder plan live in several int64 arrays of the
frame's size: ~40 bytes per pixel for a 4000 x 4000 radiograph is over half a gigabyte. Frames
above :data:`TILED_ABOVE` pixels are therefore cut into :data:`TILE` x :data:`TILE` tiles, each
an ordinary wavelet stream of its own size (:mod:`.stream`), coded and decoded one after the
other; smaller frames stay one stream (tiles cost a little at their seams: no seams below the
threshold). Layout of a tiled frame (coding ``WAVELET_TILES`` in the pixels section;
integers big-endian)::

    u32 u32  tile rows, tile columns (each 64..65535)
    per tile, row-major: u32 length, the tile's wavelet stream

The reader checks the tile size before it derives the tile count from the frame's (already
checked) shape, and every length against the data, so work stays bounded by declared sizes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from dicomcrypt.errors import PayloadFormatError

TILE = 1024
TILED_ABOVE = 2048 * 2048  # pixels of a frame coded as one stream at most
MIN_TILE = 64
_SIZE = struct.Struct(">II")
_LENGTH = struct.Struct(">I")


def is_tiled(height: int, width: int) -> bool:
    return height * width > TILED_ABOVE


def rectangles(height: int, width: int, tile_rows: int = TILE, tile_columns: int = TILE) -> list[tuple[slice, slice]]:
    """Each tile's rectangle, row-major; the last row and column of tiles take what is left."""
    return [
        (slice(top, min(top + tile_rows, height)), slice(left, min(left + tile_columns, width)))
        for top in range(0, height, tile_rows)
        for left in range(0, width, tile_columns)
    ]


def pack(height: int, width: int, encode_tile: Callable[[tuple[slice, slice]], bytes]) -> bytes:
    """A tiled frame: ``encode_tile(rectangle)`` codes each tile, one at a time."""
    parts = [_SIZE.pack(TILE, TILE)]
    for rect in rectangles(height, width):
        data = encode_tile(rect)
        parts += [_LENGTH.pack(len(data)), data]
    return b"".join(parts)


def unpack(data: bytes, height: int, width: int) -> Iterator[tuple[tuple[slice, slice], bytes]]:
    """(rectangle, tile stream) of a tiled frame of the checked shape, every size checked first."""
    view = memoryview(data)
    if len(view) < _SIZE.size:
        raise PayloadFormatError("tiled wavelet frame: truncated header")
    tile_rows, tile_columns = _SIZE.unpack_from(view, 0)
    if not (MIN_TILE <= tile_rows <= 0xFFFF and MIN_TILE <= tile_columns <= 0xFFFF):
        raise PayloadFormatError(f"tiled wavelet frame: tile size {tile_rows} x {tile_columns} out of range")
    offset = _SIZE.size
    for index, rect in enumerate(rectangles(height, width, tile_rows, tile_columns)):
        if offset + _LENGTH.size > len(view):
            raise PayloadFormatError(f"tiled wavelet frame: tile {index} truncated")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            raise PayloadFormatError(f"tiled wavelet frame: tile {index} truncated")
        yield rect, bytes(view[offset:offset + length])
        offset += length
    if offset != len(view):
        raise PayloadFormatError("tiled wavelet frame: trailing bytes after the last tile")


def tile_shape(rect: tuple[slice, slice], planes: int) -> tuple[int, int, int]:
    rows, columns = rect
    return rows.stop - rows.start, columns.stop - columns.start, planes

