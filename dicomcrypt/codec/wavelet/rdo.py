"""Encoder-side rate-distortion decisions of the lossy wavelet coder: which index each coefficient gets.

The decoder never sees these choices, only their result (indices, per-band steps and
reconstruction offsets, all already in the stream), so they can change without a format change:

- **RD-optimised indices** (:class:`Chooser`, in the encoder's one traversal of :mod:`.bands`,
  :func:`code_plane`): every coefficient starts at its nearest index; as each group of positions
  comes up, each non-zero index is lowered by one where the distortion that adds is worth less
  than the bits it saves, ``D + lambda * R`` (:data:`LAMBDA`, in squared steps per bit: the
  distortion is measured in steps, and each band's step already carries its synthesis gain, so
  one lambda serves every band). The bits are those of the index's token in the context the
  stream codes it in, under the model's table (:func:`token_costs`), plus its raw bits; the
  group's contexts come from positions already chosen, so choice and coding agree. A small value
  in a quiet context is what goes: one that a dead zone of one fixed width would keep.
- **Reconstruction offsets fitted to the image** (:func:`fitted_recon`): per band, the mean
  position of the coefficients inside their index's interval (the MSE-optimal single offset),
  replacing the model's trained per-level average.
- **A finer low band** (:data:`LOW_BAND_STEP`): at the rates the lossy mode runs at most detail
  coefficients are zero, so the low band's quantisation error is a large share of the image's
  error (in flat regions all of it) while its few thousand values cost little.

All of it is numpy on the encoder's integers and floats; the stream records the outcome, so
float rounding here cannot make two decoders disagree (the same input still gives the same bytes:
numpy's float64 arithmetic is deterministic for the same operations in the same order).
"""

from __future__ import annotations

import numpy as np

from dicomcrypt.codec.wavelet import bands, entropy, transform

LAMBDA = 0.03  # squared steps per bit: the largest that keeps the default quality's SSIM floor (docs/codec.md)
LOW_BAND_STEP = 0.7  # the low band's step as a share of what its synthesis gain alone would give
OFFSET_UNITS = 64  # reconstruction offsets are in 1/64 of a step (stream.OFFSET_FRACTION)
_MIN_FITTED = 16  # a band with fewer non-zero indices keeps the model's offset
_PRIOR = 0.5  # added to every table weight (tables sum to about 2**12), so an unseen token has a finite cost
_FLAT_COST = 6.0  # bits of any token in a context the model has no table for


def nearest_indices(coefficients: np.ndarray, rects: list[tuple[int, str, tuple[slice, slice]]],
                    steps: tuple[int, ...], step_fraction: int) -> np.ndarray:
    """``sign(c) * floor(|c| / step + 1/2)`` per band (steps in fixed point), integer arithmetic."""
    out = np.empty_like(coefficients)
    half = 1 << (step_fraction - 1)
    for (_level, _name, rect), step in zip(rects, steps):
        band = coefficients[rect]
        magnitude = ((np.abs(band) << (2 * step_fraction)) // step + half) >> step_fraction
        out[rect] = np.where(band < 0, -magnitude, magnitude)
    return out


def code_plane(coefficients: np.ndarray, levels: int, steps: tuple[int, ...], recon: tuple[int, ...],
               sink: bands.Sink, *, kind: int, costs: np.ndarray,
               step_fraction: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Choose one plane's indices while ``sink`` codes them (one traversal); returns the indices as
    coded (the low band as differences) and the reconstruction offsets fitted to them."""
    rects = transform.band_slices(coefficients.shape[0], coefficients.shape[1], levels)
    q = nearest_indices(coefficients, rects, steps, step_fraction)
    low = rects[0][2]
    low_offset = fitted_recon(coefficients[low], q[low], 0, steps[:1], recon=recon[:1], step_fraction=step_fraction)
    q[low] = bands.low_differences(q[low])
    bands.traverse(q, levels, kind, Chooser(q, coefficients, rects, steps, recon, costs=costs, inner=sink,
                                            step_fraction=step_fraction))
    offsets = fitted_recon(coefficients, q, levels, steps, recon=recon, step_fraction=step_fraction)
    return q, low_offset + offsets[1:]


def choose_indices(coefficients: np.ndarray, levels: int, steps: tuple[int, ...], recon: tuple[int, ...], *,
                   kind: int, costs: np.ndarray, step_fraction: int) -> np.ndarray:
    """The indices one plane is coded with (what :class:`Chooser` leaves in the plane it codes)."""
    rects = transform.band_slices(coefficients.shape[0], coefficients.shape[1], levels)
    q = nearest_indices(coefficients, rects, steps, step_fraction)
    bands.traverse(q, levels, kind, Chooser(q, coefficients, rects, steps, recon, costs=costs,
                                            inner=None, step_fraction=step_fraction))
    return q


def token_costs(tables: dict[int, np.ndarray]) -> np.ndarray:
    """Bits of each token in each context under the model's tables (a context without one: a flat
    cost, so only raw bits count there); what the encoder's RD choice weighs."""
    costs = np.full((entropy.CONTEXTS, entropy.TOKENS), _FLAT_COST)
    for context, row in tables.items():
        weights = np.full(entropy.TOKENS, _PRIOR)
        weights[: len(row)] += row
        costs[context] = -np.log2(weights / weights.sum())
    return costs


class Chooser:
    """A :class:`bands.Sink` that lowers indices where ``D + LAMBDA * R`` falls, then hands them on.

    It sits in the encoder's one traversal, before the :class:`bands.Collector`: each group's
    contexts were formed from positions already chosen, so the choice sees the contexts the
    stream codes in, and the later groups see the lowered values. ``q`` is the plane being coded
    (the nearest indices, the low band already as differences), ``coefficients`` the unquantised
    plane at the same positions."""

    def __init__(self, q: np.ndarray, coefficients: np.ndarray, rects: list[tuple[int, str, tuple[slice, slice]]],
                 steps: tuple[int, ...], recon: tuple[int, ...], *, costs: np.ndarray,
                 inner: bands.Sink | None, step_fraction: int) -> None:
        if not (q.flags.c_contiguous and coefficients.flags.c_contiguous and q.shape == coefficients.shape
                and q.dtype.itemsize == coefficients.dtype.itemsize == 8):
            raise ValueError("RD choice: indices and coefficients must be contiguous 64-bit planes of one shape")
        self._q, self._coefficients, self._rects = q, coefficients, rects
        self._steps, self._recon, self._costs, self._inner = steps, recon, costs, inner
        self._scale = float(1 << step_fraction)
        self._low_context = entropy.PLANE_KINDS * entropy.PASSES * entropy.CLASSES

    def code(self, views: list[np.ndarray], contexts: list[np.ndarray]) -> None:
        if not (contexts and contexts[0].size and int(contexts[0].flat[0]) >= self._low_context):
            for view, context in zip(views, contexts):
                if view.size:
                    self._lower(view, context)
        if self._inner is not None:
            self._inner.code(views, contexts)

    def _lower(self, view: np.ndarray, context: np.ndarray) -> None:
        nonzero = view != 0
        if not nonzero.any():
            return
        start = (view.__array_interface__["data"][0] - self._q.__array_interface__["data"][0]) // view.itemsize
        step, offset = self._band_of(*divmod(start, self._q.shape[1]))
        unquantised = np.lib.stride_tricks.as_strided(self._coefficients.reshape(-1)[start:], shape=view.shape,
                                                      strides=view.strides)
        m = np.abs(view[nonzero])
        x = np.abs(unquantised[nonzero]).astype(np.float64) * self._scale / step  # in steps
        shift = offset / OFFSET_UNITS
        kept = m + shift
        lowered = np.where(m > 1, m - 1 + shift, 0.0)
        token_m, raw_m = entropy.token_and_bits(m)
        token_l, raw_l = entropy.token_and_bits(m - 1)
        where = context[nonzero]
        gain = (x - lowered) ** 2 - (x - kept) ** 2  # distortion added by lowering, squared steps
        saved = self._costs[where, token_m] + raw_m - self._costs[where, token_l] - raw_l
        m = np.where(gain < LAMBDA * saved, m - 1, m)
        values = view[nonzero]
        view[nonzero] = np.where(values < 0, -m, m)

    def _band_of(self, row: int, col: int) -> tuple[int, int]:
        """(step, reconstruction offset) of the detail band holding a position."""
        for (_level, name, (rows, cols)), step, offset in zip(self._rects, self._steps, self._recon):
            if name != "LL" and rows.start <= row < rows.stop and cols.start <= col < cols.stop:
                return step, offset
        raise ValueError(f"RD choice: position ({row}, {col}) is in no detail band")


def fitted_recon(coefficients: np.ndarray, q: np.ndarray, levels: int, steps: tuple[int, ...], *,
                 recon: tuple[int, ...], step_fraction: int) -> tuple[int, ...]:
    """Per band, the mean position of the coefficients above their index, in 1/64 step (-64..63)."""
    out = []
    scale = float(1 << step_fraction)
    for (_level, _name, rect), step, model_offset in zip(
            transform.band_slices(q.shape[0], q.shape[1], levels), steps, recon):
        band = q[rect]
        nonzero = band != 0
        if int(nonzero.sum()) < _MIN_FITTED:
            out.append(model_offset)
            continue
        position = np.abs(coefficients[rect][nonzero]).astype(np.float64) * scale / step - np.abs(band[nonzero])
        out.append(int(np.clip(round(OFFSET_UNITS * float(position.mean())), -OFFSET_UNITS, OFFSET_UNITS - 1)))
    return tuple(out)
