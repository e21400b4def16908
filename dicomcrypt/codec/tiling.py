"""Run a fully convolutional network over a large image in tiles, with the same result.

The paper's decoder holds 64 channels at full resolution: about 0.9 GB per float32 activation for
a 1955x1841 radiograph, 8x that for the fixed-point decoder's float64 (design.md). We cut the
input into tiles, grow each by a halo on every side that is not the image border, run the network,
and keep only the tile's own output.

Why the result equals the untiled one. With "same" zero padding, a 3x3 layer makes the outermost
output pixel of a tile differ from the untiled run only through the padding, and every further
3x3 layer moves that disagreement one pixel inwards (nearest upsampling doubles it; pooling halves
it, rounded up). The decoder's disagreement reaches 1 latent pixel (its 3x3 at latent resolution),
then 2 output pixels after upsampling, then 5 after three more 3x3 layers: less than the halo of
:data:`HALO` = 8 output pixels (4 latent). The encoder's reaches 1 pixel, 1 latent pixel after
pooling, then 3: less than 4. At the image border a tile's edge is the image's edge, so the padding
is the same as untiled. The float encoder may still differ in the last bit (oneDNN picks kernels by
shape); the fixed-point decoder is exact, so tiled == untiled to the bit (tested).

Tiles start at multiples of the model's downsampling factor so pooling windows line up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

TILE = 256  # pixels of the original image per tile side; recorded in the latent header
HALO = 8  # pixels of the original image on each inner side; a multiple of the downsampling factor


def tile_spans(size: int, tile: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """Along one axis: ``(start, stop, start_with_halo, stop_with_halo)`` covering ``[0, size)``."""
    for start in range(0, size, tile):
        stop = min(start + tile, size)
        yield start, stop, max(0, start - halo), min(size, stop + halo)


def run_tiled(
    image: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    *,
    tile: int,
    halo: int,
    up: int = 1,
    down: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Apply ``fn`` to ``(H, W, C)`` tile by tile; ``fn`` maps an ``h x w`` region to ``h*up/down``.

    ``tile``, ``halo``, ``H`` and ``W`` must be multiples of ``down`` so every region maps to a
    whole number of output pixels. ``out``, if given, receives the result and may be smaller than
    the full output (the top-left part is kept): decoders write straight into the cropped image
    instead of allocating a padded copy of it.
    """
    height, width = image.shape[:2]
    if any(v % down for v in (tile, halo, height, width)) or tile <= 0 or halo < 0:
        raise ValueError(f"tiling: tile {tile}, halo {halo} and size {height}x{width} must be multiples of {down}")
    if out is not None and (out.shape[0] > height * up // down or out.shape[1] > width * up // down):
        raise ValueError(f"tiling: output {out.shape[:2]} is larger than the result")
    for y0, y1, ya, yb in tile_spans(height, tile, halo):
        for x0, x1, xa, xb in tile_spans(width, tile, halo):
            result = fn(image[ya:yb, xa:xb])
            if out is None:
                out = np.empty((height * up // down, width * up // down, result.shape[2]), dtype=result.dtype)
            top, left = y0 * up // down, x0 * up // down
            rows = min(y1 * up // down, out.shape[0]) - top
            cols = min(x1 * up // down, out.shape[1]) - left
            if rows <= 0 or cols <= 0:
                continue
            skip_y, skip_x = (y0 - ya) * up // down, (x0 - xa) * up // down
            out[top : top + rows, left : left + cols] = result[skip_y : skip_y + rows, skip_x : skip_x + cols]
    assert out is not None
    return out


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate ``(H, W, C)`` up to a multiple of ``multiple``; callers crop back.

    Replicating the edge (rather than zeros) keeps the border of the image in the statistics the
    model was trained on, so the cropped-off row or column does not leak an artificial edge.
    """
    height, width = image.shape[:2]
    extra_h, extra_w = (-height) % multiple, (-width) % multiple
    if not (extra_h or extra_w):
        return image
    return np.pad(image, ((0, extra_h), (0, extra_w), (0, 0)), mode="edge")
