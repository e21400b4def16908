"""One traversal of a plane's bands, shared by encoder and decoder so both form the same contexts.

:func:`traverse` walks the bands in coding order (low band, then coarse to fine, HL, LH, HH),
each detail band in three passes (even rows and columns; odd rows and columns; the rest), and
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
    def code(self, band: np.ndarray, rows: np.ndarray, cols: np.ndarray, contexts: np.ndarray) -> None: ...


def traverse(plane: np.ndarray, levels: int, kind: int, sink: Sink) -> None:
    """Code (or decode into) ``plane``: int64 ``(H, W)`` coefficients in Mallat layout."""
    height, width = plane.shape
    bands = band_slices(height, width, levels)
    by_name = {(level, name): plane[rect] for level, name, rect in bands}
    low = by_name[(levels, "LL")]
    _code_low(low, kind, sink)
    for level, name, rect in bands[1:]:
        band = plane[rect]
        parent = by_name.get((level + 1, name))
        siblings = [by_name[(level, s)] for s in _SIBLINGS[name]]
        _code_detail(band, parent, siblings, kind, sink)


def _code_low(low: np.ndarray, kind: int, sink: Sink) -> None:
    """The low band is coded as differences (left neighbour; above for the first column),
    which :func:`undo_low_differences` integrates; the sink sees the difference array."""
    if low.size == 0:
        return
    rows, cols = np.indices(low.shape)
    context = np.full(low.size, entropy.PLANE_KINDS * PASSES * entropy.CLASSES + kind, dtype=np.int64)
    sink.code(low, rows.ravel(), cols.ravel(), context)


def low_differences(low: np.ndarray) -> np.ndarray:
    diff = low.copy()
    diff[:, 1:] = low[:, 1:] - low[:, :-1]
    diff[1:, 0] = low[1:, 0] - low[:-1, 0]
    return diff


def undo_low_differences(diff: np.ndarray) -> np.ndarray:
    low = diff.copy()
    low[:, 0] = np.cumsum(diff[:, 0])
    return np.cumsum(low, axis=1)


def _code_detail(
    band: np.ndarray, parent: np.ndarray | None, siblings: list[np.ndarray], kind: int, sink: Sink
) -> None:
    h, w = band.shape
    if h == 0 or w == 0:
        return
    rows, cols = np.indices((h, w))
    base = np.zeros((h, w), dtype=np.int64)
    if parent is not None and parent.size:
        pr = np.minimum(rows // 2, parent.shape[0] - 1)
        pc = np.minimum(cols // 2, parent.shape[1] - 1)
        base += np.abs(parent[pr, pc])
    near = np.zeros((h, w), dtype=np.int64)
    for sibling in siblings:
        if sibling.size:
            near += np.abs(sibling[np.minimum(rows, sibling.shape[0] - 1), np.minimum(cols, sibling.shape[1] - 1)])
    offset = kind * PASSES * entropy.CLASSES
    # Pass 1: even rows and columns; context from the parent and the siblings only.
    first = ((rows | cols) & 1) == 0
    sink.code(band, rows[first], cols[first], offset + entropy.activity_class(2 * base + near)[first])
    # Pass 2: odd rows and columns; their four diagonal neighbours are pass-1 positions.
    second = (rows & cols & 1) == 1
    magnitude = np.pad(np.abs(band), 1)  # read after each pass: the decoder has just filled it
    diagonal = magnitude[:-2, :-2] + magnitude[:-2, 2:] + magnitude[2:, :-2] + magnitude[2:, 2:]
    activity = diagonal + base + (near >> 1)
    sink.code(band, rows[second], cols[second], offset + entropy.CLASSES + entropy.activity_class(activity[second]))
    # Pass 3: the rest; their four direct neighbours are pass-1 and pass-2 positions.
    third = ((rows ^ cols) & 1) == 1
    magnitude = np.pad(np.abs(band), 1)
    direct = magnitude[:-2, 1:-1] + magnitude[2:, 1:-1] + magnitude[1:-1, :-2] + magnitude[1:-1, 2:]
    activity = direct + base + (near >> 1)
    sink.code(band, rows[third], cols[third], offset + 2 * entropy.CLASSES + entropy.activity_class(activity[third]))


class Collector:
    """Encoder sink: tokenises the values at each group and records the ANS calls."""

    def __init__(self) -> None:
        self.plan = entropy.Plan()

    def code(self, band: np.ndarray, rows: np.ndarray, cols: np.ndarray, contexts: np.ndarray) -> None:
        values = band[rows, cols]
        tokens, raw, bits = entropy.tokenise(values)
        if tokens.size and int(tokens.max()) >= entropy.TOKENS:
            raise ValueError("wavelet coefficient too large to code")
        np.add.at(self.plan.counts, (contexts, tokens), 1)
        order = np.argsort(contexts, kind="stable")
        for context, start, stop in _groups(contexts[order]):
            self.plan.calls.append(("t", context, tokens[order[start:stop]]))
        order = np.argsort(bits, kind="stable")
        for width, start, stop in _groups(bits[order]):
            if width:
                self.plan.calls.append(("r", width, raw[order[start:stop]]))


class Filler:
    """Decoder sink: decodes each group and writes the values into the band."""

    def __init__(self, decoder: entropy.Decoder) -> None:
        self.decoder = decoder

    def code(self, band: np.ndarray, rows: np.ndarray, cols: np.ndarray, contexts: np.ndarray) -> None:
        tokens = np.empty(contexts.size, dtype=np.int32)
        order = np.argsort(contexts, kind="stable")
        for context, start, stop in _groups(contexts[order]):
            tokens[order[start:stop]] = self.decoder.tokens(context, stop - start)
        bits = entropy.raw_bits_of(tokens)
        raw = np.zeros(contexts.size, dtype=np.int64)
        order = np.argsort(bits, kind="stable")
        for width, start, stop in _groups(bits[order]):
            if width:
                raw[order[start:stop]] = self.decoder.raw(width, stop - start)
        values = entropy.detokenise(tokens, raw)
        if values.size and int(np.abs(values).max()) > MAX_DECODED_MAGNITUDE:
            raise PayloadFormatError("wavelet stream: a coefficient exceeds what any image produces")
        band[rows, cols] = values


def _groups(sorted_keys: np.ndarray) -> list[tuple[int, int, int]]:
    """(key, start, stop) of each run of equal keys in a sorted array."""
    if sorted_keys.size == 0:
        return []
    edges = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [sorted_keys.size]])
    return [(int(sorted_keys[s]), int(s), int(e)) for s, e in zip(starts, stops)]
