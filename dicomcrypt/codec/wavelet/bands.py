"""One traversal of a plane's bands, shared by encoder and decoder so both form the same contexts.

:func:`traverse` walks the bands in coding order (low band, then coarse to fine, HL, LH, HH),
each detail band in five passes (even rows and columns in three steps; odd rows and columns;
the rest), and
hands each group of positions with its context indices to a *sink*: :class:`Collector`
(encoder) reads the true values there and plans the ANS calls; :class:`Filler` (decoder)
decodes them and writes them into the plane, which the next contexts then read. The context of
a position only ever reads positions coded before it, so the encoder (which holds every value
from the start) computes what the decoder computes.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from dicomcrypt.codec.wavelet import entropy
from dicomcrypt.codec.wavelet.transform import band_slices
from dicomcrypt.errors import PayloadFormatError

MAX_DECODED_MAGNITUDE = 1 << 30
PASSES = entropy.PASSES  # per detail band: each pass sees the decoded neighbours of the ones before
_SIBLINGS = {"HL": (), "LH": ("HL",), "HH": ("HL", "LH")}  # bands of the same level coded earlier


class Sink(Protocol):
    def code(self, views: list[np.ndarray], contexts: list[np.ndarray]) -> None: ...


def traverse(plane: np.ndarray, levels: int, kind: int, sink: Sink) -> None:
    """Code (or decode into) ``plane``: int64 ``(H, W)`` coefficients in Mallat layout."""
    height, width = plane.shape
    bands = band_slices(height, width, levels)
    by_name = {(level, name): plane[rect] for level, name, rect in bands}
    low = by_name[(levels, "LL")]
    if low.size:
        context = np.full(low.shape, entropy.PLANE_KINDS * PASSES * entropy.CLASSES + kind, dtype=np.int64)
        sink.code([low], [context])  # the low band as differences: see low_differences
    for level, name, rect in bands[1:]:
        band = plane[rect]
        parent = by_name.get((level + 1, name))
        siblings = [by_name[(level, s)] for s in _SIBLINGS[name]]
        _code_detail(band, parent, siblings, kind, sink)


def low_differences(low: np.ndarray) -> np.ndarray:
    """The low band as coded: each value minus its left neighbour (the first column: minus the one above)."""
    diff = low.copy()
    diff[:, 1:] = low[:, 1:] - low[:, :-1]
    diff[1:, 0] = low[1:, 0] - low[:-1, 0]
    return diff


def undo_low_differences(diff: np.ndarray) -> np.ndarray:
    low = diff.copy()
    low[:, 0] = np.cumsum(diff[:, 0])
    return np.cumsum(low, axis=1)


def _stretch(source: np.ndarray, height: int, width: int, factor: int) -> np.ndarray:
    """``|source[i // factor, j // factor]|`` on a ``height x width`` grid, indices clipped to the source."""
    magnitude = np.abs(source)
    if factor > 1:
        magnitude = magnitude.repeat(factor, axis=0).repeat(factor, axis=1)
    if magnitude.shape[0] < height or magnitude.shape[1] < width:  # a sibling one row or column short
        magnitude = np.pad(magnitude, ((0, max(0, height - magnitude.shape[0])),
                                       (0, max(0, width - magnitude.shape[1]))), mode="edge")
    return magnitude[:height, :width]


def _code_detail(
    band: np.ndarray, parent: np.ndarray | None, siblings: list[np.ndarray], kind: int, sink: Sink
) -> None:
    h, w = band.shape
    if h == 0 or w == 0:
        return
    base = _stretch(parent, h, w, 2) if parent is not None and parent.size else np.zeros((h, w), dtype=np.int64)
    near = np.zeros((h, w), dtype=np.int64)
    for sibling in siblings:
        if sibling.size:
            near += _stretch(sibling, h, w, 1)
    offset = kind * PASSES * entropy.CLASSES
    classify = entropy.activity_class
    # Pass 1: even rows and columns, itself in three steps on the grid of step 2 (rows and
    # columns 0 mod 4; 2 mod 4; the rest), each seeing its decoded neighbours two apart.
    first = 2 * base + near
    sink.code([band[0::4, 0::4]], [offset + classify(first[0::4, 0::4])])
    if h > 2 and w > 2:
        magnitude = _bordered(band, 2)
        activity = (_around(magnitude, 2, (2, 2, 4), _DIAGONAL) >> 1) + first[2::4, 2::4]
        sink.code([band[2::4, 2::4]], [offset + 3 * entropy.CLASSES + classify(activity)])
    magnitude = _bordered(band, 2)
    step = offset + 4 * entropy.CLASSES
    sink.code([band[0::4, 2::4], band[2::4, 0::4]],
              [step + classify((_around(magnitude, 2, (0, 2, 4), _DIRECT) >> 1) + first[0::4, 2::4]),
               step + classify((_around(magnitude, 2, (2, 0, 4), _DIRECT) >> 1) + first[2::4, 0::4])])
    # Pass 2: odd rows and columns; their four diagonal neighbours are pass-1 positions.
    rest = (base >> 1) + (near >> 2)
    if h > 1 and w > 1:
        magnitude = _bordered(band, 1)  # read after each pass: the decoder has just filled it
        activity = _around(magnitude, 1, (1, 1, 2), _DIAGONAL) + rest[1::2, 1::2]
        sink.code([band[1::2, 1::2]], [offset + entropy.CLASSES + classify(activity)])
    # Pass 3: the rest; their four direct neighbours are pass-1 and pass-2 positions.
    magnitude = _bordered(band, 1)
    third = offset + 2 * entropy.CLASSES
    sink.code([band[0::2, 1::2], band[1::2, 0::2]],
              [third + classify(_around(magnitude, 1, (0, 1, 2), _DIRECT) + rest[0::2, 1::2]),
               third + classify(_around(magnitude, 1, (1, 0, 2), _DIRECT) + rest[1::2, 0::2])])


_DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))  # neighbour offsets, in units of the grid's spacing / 2
_DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _around(magnitude: np.ndarray, border: int, grid: tuple[int, int, int],
            neighbours: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Sum of the ``neighbours`` (each ``border`` positions away) of the grid positions
    ``rows first::step, columns first::step`` of a band, read from its zero-bordered magnitudes:
    only the positions coded next are summed."""
    row, col, step = grid
    height, width = magnitude.shape[0] - 2 * border, magnitude.shape[1] - 2 * border
    rows, cols = len(range(row, height, step)), len(range(col, width, step))
    total = np.zeros((rows, cols), dtype=magnitude.dtype)
    for dr, dc in neighbours:
        r, c = row + border + dr * border, col + border + dc * border
        total += magnitude[r:r + step * (rows - 1) + 1:step, c:c + step * (cols - 1) + 1:step]
    return total


def _bordered(band: np.ndarray, border: int) -> np.ndarray:
    """``|band|`` inside a ``border`` of zeros (``np.pad`` does the same, several times slower)."""
    out = np.zeros((band.shape[0] + 2 * border, band.shape[1] + 2 * border), dtype=band.dtype)
    np.abs(band, out=out[border:-border, border:-border])
    return out


class Collector:
    """Encoder sink: tokenises the values at each group and records the ANS calls."""

    def __init__(self) -> None:
        self.plan = entropy.Plan()

    def code(self, views: list[np.ndarray], contexts: list[np.ndarray]) -> None:
        values = np.concatenate([v.ravel() for v in views])
        context = np.concatenate([c.ravel() for c in contexts])
        if values.size == 0:
            return
        tokens, raw, bits = entropy.tokenise(values)
        if int(tokens.max()) >= entropy.TOKENS:
            raise ValueError("wavelet coefficient too large to code")
        self.plan.counts += np.bincount(context * entropy.TOKENS + tokens, minlength=self.plan.counts.size).reshape(
            self.plan.counts.shape
        )
        order = np.argsort(context.astype(np.int16), kind="stable")  # radix sort: keys < 2**15
        for key, start, stop in _groups(context[order]):
            self.plan.calls.append(("t", key, tokens[order[start:stop]]))
        order = np.argsort(bits.astype(np.int16), kind="stable")
        for width, start, stop in _groups(bits[order]):
            if width:
                self.plan.calls.append(("r", width, raw[order[start:stop]]))


class Filler:
    """Decoder sink: decodes each group and writes the values into the band's views."""

    def __init__(self, decoder: entropy.Decoder) -> None:
        self.decoder = decoder

    def code(self, views: list[np.ndarray], contexts: list[np.ndarray]) -> None:
        context = np.concatenate([c.ravel() for c in contexts])
        if context.size == 0:
            return
        tokens = np.empty(context.size, dtype=np.int32)
        order = np.argsort(context.astype(np.int16), kind="stable")  # radix sort: keys < 2**15
        for key, start, stop in _groups(context[order]):
            tokens[order[start:stop]] = self.decoder.tokens(key, stop - start)
        bits = entropy.raw_bits_of(tokens)
        raw = np.zeros(context.size, dtype=np.int64)
        order = np.argsort(bits.astype(np.int16), kind="stable")
        for width, start, stop in _groups(bits[order]):
            if width:
                raw[order[start:stop]] = self.decoder.raw(width, stop - start)
        values = entropy.detokenise(tokens, raw)
        if int(np.abs(values).max()) > MAX_DECODED_MAGNITUDE:
            raise PayloadFormatError("wavelet stream: a coefficient exceeds what any image produces")
        start = 0
        for view in views:
            view[...] = values[start:start + view.size].reshape(view.shape)
            start += view.size


def _groups(sorted_keys: np.ndarray) -> list[tuple[int, int, int]]:
    """(key, start, stop) of each run of equal keys in a sorted array."""
    if sorted_keys.size == 0:
        return []
    edges = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [sorted_keys.size]])
    return [(int(sorted_keys[s]), int(s), int(e)) for s, e in zip(starts, stops)]
