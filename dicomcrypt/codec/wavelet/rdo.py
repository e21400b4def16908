"""Encoder-side rate-distortion decisions of the lossy wavelet coder: which index each coefficient gets.

The decoder never sees these choices, only their result (indices, per-band steps and
reconstruction offsets, all already in the stream), so they can change without a format change:

- **RD-optimised indices** (:func:`choose_indices`): every coefficient starts at its nearest
  index; then each non-zero index is lowered by one where the distortion that adds is worth less
  than the bits it saves, ``D + lambda * R`` with ``lambda`` tied to the step (:data:`LAMBDA`, in
  squared steps per bit: the distortion is measured in steps, and each band's step already
  carries its synthesis gain, so one lambda serves every band). The bits are those of the
  index's token in its real context (the traversal of :mod:`.bands` on the nearest indices, with
  this image's token counts as the probabilities) plus its raw bits. Isolated +-1 values in
  quiet, finely divided bands are what this removes most: noise that a dead zone of one fixed
  width either keeps everywhere or drops everywhere.
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

LAMBDA = 0.04  # squared steps per bit: the largest that keeps the default quality's SSIM floor (docs/codec.md)
LOW_BAND_STEP = 0.7  # the low band's step as a share of what its synthesis gain alone would give
OFFSET_UNITS = 64  # reconstruction offsets are in 1/64 of a step (stream.OFFSET_FRACTION)
_MIN_FITTED = 16  # a band with fewer non-zero indices keeps the model's offset
_PRIOR = 0.02  # added to every token count, so an unseen token has a finite cost


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


def choose_indices(coefficients: np.ndarray, levels: int, steps: tuple[int, ...], recon: tuple[int, ...], *,
                   kind: int, step_fraction: int) -> np.ndarray:
    """The indices one plane is coded with: nearest, then lowered where ``D + LAMBDA * R`` falls."""
    rects = transform.band_slices(coefficients.shape[0], coefficients.shape[1], levels)
    q = nearest_indices(coefficients, rects, steps, step_fraction)
    contexts = context_map(q, levels, kind)
    detail = contexts >= 0
    tokens, _bits = entropy.token_and_bits(np.abs(q[detail]))
    counts = np.bincount(contexts[detail] * entropy.TOKENS + tokens,
                         minlength=entropy.CONTEXTS * entropy.TOKENS).reshape(entropy.CONTEXTS, entropy.TOKENS)
    smoothed = counts + _PRIOR
    cost = -np.log2(smoothed / smoothed.sum(axis=1, keepdims=True))  # bits of each token in each context
    scale = float(1 << step_fraction)
    for (_level, name, rect), step, offset in zip(rects, steps, recon):
        if name == "LL":
            continue  # coded as differences, a few thousand values: nearest is right
        band = q[rect]
        nonzero = band != 0
        if not nonzero.any():
            continue
        m = np.abs(band[nonzero])
        x = np.abs(coefficients[rect][nonzero]).astype(np.float64) * scale / step  # in steps
        context = contexts[rect][nonzero]
        shift = offset / OFFSET_UNITS
        kept = m + shift
        lowered = np.where(m > 1, m - 1 + shift, 0.0)
        token_m, raw_m = entropy.token_and_bits(m)
        token_l, raw_l = entropy.token_and_bits(m - 1)
        gain = (x - lowered) ** 2 - (x - kept) ** 2  # distortion added by lowering, squared steps
        saved = cost[context, token_m] + raw_m - cost[context, token_l] - raw_l
        m = np.where(gain < LAMBDA * saved, m - 1, m)
        values = band[nonzero]
        band[nonzero] = np.where(values < 0, -m, m)
    return q


def context_map(q: np.ndarray, levels: int, kind: int) -> np.ndarray:
    """The context index every detail coefficient of ``q`` is coded in (-1 in the low band)."""
    recorder = _ContextRecorder(q)
    bands.traverse(q, levels, kind, recorder)
    low = transform.band_slices(q.shape[0], q.shape[1], levels)[0][2]
    recorder.contexts[low] = -1
    return recorder.contexts


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


class _ContextRecorder:
    """A :class:`bands.Sink` that writes each position's context into a plane-shaped map.

    The views the traversal hands over are basic slices of the plane, so their byte offset and
    strides locate the same positions in a map of the same shape and item size."""

    def __init__(self, plane: np.ndarray) -> None:
        if not plane.flags.c_contiguous or plane.dtype.itemsize != 8:
            raise ValueError("context map: the plane must be a contiguous 64-bit array")
        self._plane = plane
        self.contexts = np.full(plane.shape, -1, dtype=np.int64)

    def code(self, views: list[np.ndarray], contexts: list[np.ndarray]) -> None:
        base = self._plane.__array_interface__["data"][0]
        flat = self.contexts.reshape(-1)
        for view, context in zip(views, contexts):
            if view.size == 0:
                continue
            start = (view.__array_interface__["data"][0] - base) // view.itemsize
            target = np.lib.stride_tricks.as_strided(flat[start:], shape=view.shape, strides=view.strides)
            target[...] = context
