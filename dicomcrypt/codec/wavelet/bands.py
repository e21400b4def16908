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
    rows = np.minimum(np.arange(height) // factor, source.shape[0] - 1)
    cols = np.minimum(np.arange(width) // factor, source.shape[1] - 1)
    return np.abs(source[rows[:, None], cols[None, :]])


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
    magnitude = _bordered(band, 2)
    if h > 2 and w > 2:
        diagonal = magnitude[:-4, :-4] + magnitude[:-4, 4:] + magnitude[4:, :-4] + magnitude[4:, 4:]
        activity = ((diagonal >> 1) + first)[2::4, 2::4]
        sink.code([band[2::4, 2::4]], [offset + 3 * entropy.CLASSES + classify(activity)])
        magnitude = _bordered(band, 2)
    direct = magnitude[:-4, 2:-2] + magnitude[4:, 2:-2] + magnitude[2:-2, :-4] + magnitude[2:-2, 4:]
    activity = (direct >> 1) + first
    step = offset + 4 * entropy.CLASSES
    sink.code([band[0::4, 2::4], band[2::4, 0::4]], [step + classify(activity[0::4, 2::4]),
                                                     step + classify(activity[2::4, 0::4])])
    # Pass 2: odd rows and columns; their four diagonal neighbours are pass-1 positions.
    magnitude = _bordered(band, 1)  # read after each pass: the decoder has just filled it
    rest = (base >> 1) + (near >> 2)
    if h > 1 and w > 1:
        diagonal = magnitude[:-2, :-2] + magnitude[:-2, 2:] + magnitude[2:, :-2] + magnitude[2:, 2:]
        activity = (diagonal + rest)[1::2, 1::2]
        sink.code([band[1::2, 1::2]], [offset + entropy.CLASSES + classify(activity)])
        magnitude = _bordered(band, 1)
    # Pass 3: the rest; their four direct neighbours are pass-1 and pass-2 positions.
    direct = magnitude[:-2, 1:-1] + magnitude[2:, 1:-1] + magnitude[1:-1, :-2] + magnitude[1:-1, 2:]
    activity = direct + rest
    third = offset + 2 * entropy.CLASSES
    sink.code([band[0::2, 1::2], band[1::2, 0::2]],
              [third + classify(activity[0::2, 1::2]), third + classify(activity[1::2, 0::2])])


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
