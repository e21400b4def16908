"""A fixed-point copy of the decoder whose output is bit-identical on every machine.

Why: the lossless mode sends ``residual = original - round(prediction)``. The receiver rebuilds the
prediction and adds the residual back, so both sides must compute *the same bits*. A float32
network does not: oneDNN/MKL pick kernels by CPU ISA and split sums by thread count, and float
addition is not associative (design.md: 31 of 262k CT pixels rounded differently between float32
and float64). Fixing the summation order is fragile; making every sum exact is not.

How: every layer works on integers held in float64 tensors.

* Weights: ``w_int = round(w * 2**we)`` with one power-of-two exponent ``we`` per layer, chosen so
  that ``|w_int| <= 2**14``. (Models exported before ``ps-grey@2`` used ``2**10``; they load
  unchanged. A layer whose weights span a wide range -- a Haar-initialised network keeps weights
  of 1 beside trained ones of 1e-3 -- needs the finer grid: at ``2**10`` the exact decoder of such
  a model lost up to 7 dB against its float copy, at ``2**14`` nothing measurable.)
* Activations: ``a_int = round(a * 2**ae)``, ``ae`` per layer from calibration on training data
  (done once at export and stored with the weights). After a ReLU ``a_int`` is clamped to
  ``[0, 2**16 - 1]``; after a linear layer (and for the decoder input) to
  ``[-(2**16 - 1), 2**16 - 1]``.
* Biases: at the accumulator's scale, ``b_int = round(b * 2**(ae_in + we))``, ``|b_int| <= 2**40``.

The bound argument. A 3x3 convolution over at most 64 channels has a fan-in of at most
``64 * 9 = 576 < 2**10`` products, each of magnitude ``<= 2**14 * (2**16 - 1) < 2**30``; so any
partial sum of any subset of them, plus the bias (with the rounding offset below folded in,
``<= 2**40 + 2**40``), is an integer of magnitude ``< 2**40 + 2**41 < 2**42``. float64 represents
every integer below ``2**53`` exactly, so every addition a BLAS kernel performs -- in whatever
order, blocking, thread split or with FMA -- is exact, and the accumulator is the same integer
everywhere. The bounds are enforced, not assumed:
the clamps hold them for any input (a hostile latent saturates, it cannot break exactness) and
:meth:`FixedPointDecoder.from_state` refuses weights that exceed them.

Between layers the accumulator (scale ``2**-(ae_in + we)``) moves to the next activation scale
``2**-ae_out`` by ``d = ae_in + we - ae_out`` (``1 <= d <= 41`` enforced when positive):
``floor((acc + 2**(d-1)) * 2**-d)``, i.e. round-half-up of ``acc * 2**-d``. The ``2**(d-1)`` is
added to the bias once at load, so it is part of the exact integer sum; the product is a
multiplication by a power of two, exact; ``floor`` is exact. Nearest-neighbour
upsampling copies values. The final layer's accumulator times ``2**-(ae_in + we)`` is exact too,
then clamped to [0, 1]: the output is a float64 dyadic rational, identical everywhere.

The decoder input is the dequantised latent, computed by :mod:`dicomcrypt.codec.latent` with plain
elementwise IEEE float64 operations (multiply, then add; never fused), converted to fixed point by
``floor(x * 2**ae + 0.5)``: IEEE-754 makes each of those operations correctly rounded, hence
deterministic.

Convolutions run as nine shifted matrix products over a zero-padded, channels-last, flattened
tile (``out[p] += x[p + dy * (W + 2) + dx] @ W[dy, dx]``): each is one contiguous DGEMM, about
2.5x faster than torch's float64 ``conv2d`` (im2col) here and without its 9x memory.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from dicomcrypt.errors import ModelError

if TYPE_CHECKING:
    from dicomcrypt.codec.arch.base import BaseDecoder

WEIGHT_LIMIT = 2**14  # int16 storage holds it; see the bound argument above
ACT_LIMIT = 2**16 - 1
BIAS_LIMIT = 2**40
MAX_FAN_IN = 576
_EXP_RANGE = range(-60, 61)
# Headroom over the largest activation seen in calibration; a power-of-two grid adds up to 2x more.
CALIBRATION_MARGIN = 1.25
_POST_OPS = (None, "upsample", "shuffle")
_GATHER_MAX = 64  # 3x3 layers with 9 * inputs up to this gather their taps into one DGEMM
_STACK_MAX = 16  # 3x3 layers with up to this many outputs run one DGEMM over all taps

Plan = tuple[tuple[str, int, bool, "str | None"], ...]
# (name, kernel size, ReLU after it, "upsample" / "shuffle" / None after it); the last layer is the
# linear output. Each architecture's decoder class carries its own as ``PLAN``.


@dataclass(frozen=True)
class _Layer:
    name: str
    kernel: int
    relu: bool
    post: str | None
    taps: torch.Tensor  # (k*k, in, out) float64, integer-valued
    stacked: torch.Tensor  # (in, k*k*out): the taps side by side, for layers with few outputs
    bias: torch.Tensor  # (out,) float64, integer-valued, at the accumulator scale, rounding offset folded in
    shift: int  # d = ae_in + we - ae_out; for the output layer ae_in + we


class FixedPointDecoder:
    """The exact decoder: latent tile ``(h, w, 3)`` float64 -> image tile ``(2h, 2w, C)`` float64."""

    def __init__(self, input_exp: int, layers: list[_Layer]) -> None:
        self.input_exp = input_exp
        self.layers = layers
        last = layers[-1]
        self.out_channels = int(last.taps.shape[2]) // (4 if last.post == "shuffle" else 1)

    @classmethod
    def from_state(cls, state: dict, plan: Plan) -> FixedPointDecoder:
        """Build from the exported integer state, refusing anything that breaks the bounds.

        ``plan`` is the architecture's layer recipe (``Decoder.PLAN``); the state holds numbers only.
        """
        try:
            input_exp = _check_exp(state["input_exp"], "input_exp")
            act_exp = input_exp
            layers: list[_Layer] = []
            for index, (name, kernel, relu, post) in enumerate(plan):
                last = index == len(plan) - 1
                if post not in _POST_OPS or (post == "shuffle" and not last) or kernel not in (1, 3):
                    raise ModelError(f"fixed-point plan: layer {name} ({kernel}x{kernel}, then {post}) not supported")
                entry = state["layers"][name]
                weight = entry["weight"].to(torch.float64)
                bias = entry["bias"].to(torch.float64)
                weight_exp = _check_exp(entry["weight_exp"], f"{name}.weight_exp")
                out_exp = _check_exp(entry["act_exp"], f"{name}.act_exp") if not last else 0
                _check_integers(weight, WEIGHT_LIMIT, f"{name}.weight")
                _check_integers(bias, BIAS_LIMIT, f"{name}.bias")
                if weight.ndim != 4 or weight.shape[2:] != (kernel, kernel) or bias.shape != weight.shape[:1]:
                    raise ModelError(f"fixed-point layer {name}: unexpected shape {tuple(weight.shape)}")
                if weight.shape[1] * kernel * kernel > MAX_FAN_IN:
                    raise ModelError(f"fixed-point layer {name}: fan-in above {MAX_FAN_IN}")
                if layers and weight.shape[1] != layers[-1].taps.shape[2]:
                    raise ModelError(f"fixed-point layer {name}: {weight.shape[1]} inputs after "
                                     f"{layers[-1].taps.shape[2]} outputs")
                shift = act_exp + weight_exp - out_exp
                if not last and shift > 0:
                    if shift > 41:
                        raise ModelError(f"fixed-point layer {name}: rescaling shift {shift} above 41")
                    bias = bias + math.ldexp(1.0, shift - 1)  # round half up, folded into the bias
                taps = weight.permute(2, 3, 1, 0).reshape(kernel * kernel, weight.shape[1], weight.shape[0])
                stacked = taps.permute(1, 0, 2).reshape(weight.shape[1], -1).contiguous()
                layers.append(_Layer(name, kernel, relu, post, taps.contiguous(), stacked, bias, shift))
                act_exp = out_exp
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"fixed-point decoder state is incomplete or malformed ({exc!r})") from exc
        return cls(input_exp, layers)

    def session(self) -> _Session:
        """A callable decoding tiles one after another, reusing its buffers (one per thread)."""
        return _Session(self)

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        """Decode one latent tile; deterministic to the bit for any thread count or CPU."""
        return self.session()(latent)


class _Session:
    """Buffers for one image's tiles. Reallocating ~40 MB activations per tile costs page faults
    (glibc returns large blocks to the kernel), so each role keeps one flat storage and views it."""

    def __init__(self, decoder: FixedPointDecoder) -> None:
        self.decoder = decoder
        self.storage: dict[str, torch.Tensor] = {}

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        if latent.ndim != 3 or latent.dtype != np.float64:
            raise ValueError("fixed-point decoder takes one (h, w, C) float64 latent tile")
        layers = self.decoder.layers
        height, width = latent.shape[:2]
        with torch.inference_mode():
            # Decoder input: floor(x * 2**e + 0.5), two correctly rounded IEEE operations, exact floor.
            x = torch.from_numpy(np.ascontiguousarray(latent))
            x = torch.floor(x * math.ldexp(1.0, self.decoder.input_exp) + 0.5).clamp_(-ACT_LIMIT, ACT_LIMIT)
            padded = False  # whether x is a zero-bordered (H + 2, W + 2, C) buffer or a dense (H, W, C) grid
            for index, layer in enumerate(layers):
                last = index == len(layers) - 1
                nxt = layers[index + 1] if not last else None
                if layer.kernel == 3 and not padded:
                    x = self._pad(f"{layer.name}.in", x)
                if layer.kernel == 1:
                    # A 1x1 layer reads a dense grid: the step before it only pads for a 3x3 layer.
                    acc = torch.addmm(layer.bias, x.reshape(height * width, x.shape[2]), layer.taps[0])
                    grid = acc.view(height, width, -1)
                elif nxt is not None and nxt.kernel == 3 and layer.post is None:
                    # Write the accumulator straight into the next layer's padded input.
                    target = self._padded(layer.name, height, width, layer.taps.shape[2])
                    body = _body(target, height, width)
                    _conv3x3(x, body, layer, self)
                    _rescale_(body, layer.shift, relu=layer.relu)
                    target[:, 0] = 0.0  # the two wrapped-around columns land on the padding: clear them
                    target[:, width + 1] = 0.0
                    x, padded = target, True
                    continue
                elif last and layer.taps.shape[2] <= _STACK_MAX:
                    # Output layer with few channels: stay channels-first and rearrange once.
                    planes = _stacked_sums(x, layer, self)
                    planes.mul_(math.ldexp(1.0, -layer.shift)).clamp_(0.0, 1.0)
                    planes = planes.view(-1, height, width + 2)[:, :, :width]
                    if layer.post == "shuffle":  # channel c*4 + 2i + j -> pixel (2y + i, 2x + j) of channel c
                        view = planes.unflatten(0, (-1, 2, 2)).permute(3, 1, 4, 2, 0)
                        shape = (2 * height, 2 * width, view.shape[4])
                    else:
                        view = planes.permute(1, 2, 0)
                        shape = (height, width, view.shape[2])
                    out = torch.empty(view.shape, dtype=torch.float64)
                    out.copy_(view)
                    return out.view(shape).numpy()
                else:
                    acc = self._buffer(layer.name, height * (width + 2), layer.taps.shape[2])
                    _conv3x3(x, acc, layer, self)
                    grid = acc.view(height, width + 2, -1)[:, :width]
                if last:
                    acc.mul_(math.ldexp(1.0, -layer.shift)).clamp_(0.0, 1.0)
                    if layer.post == "shuffle":  # channel c*4 + 2i + j -> pixel (2y + i, 2x + j) of channel c
                        out = grid.unflatten(2, (-1, 2, 2)).permute(0, 3, 1, 4, 2)
                        return out.reshape(2 * height, 2 * width, -1).numpy().copy()
                    return grid.numpy().copy()
                _rescale_(acc, layer.shift, relu=layer.relu)
                if layer.post == "upsample":
                    grid = grid[:, None, :, None, :].expand(height, 2, width, 2, grid.shape[2])
                    height, width = 2 * height, 2 * width
                    grid = grid.reshape(height, width, -1) if nxt is None or nxt.kernel != 3 else grid
                if nxt is not None and nxt.kernel == 3:
                    x, padded = self._pad(f"{nxt.name}.in", grid, height, width), True
                else:
                    x, padded = grid.contiguous(), False
        raise AssertionError("unreachable: the plan ends with its output layer")

    def _pad(self, role: str, grid: torch.Tensor, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """Copy a grid (``(H, W, C)``, or ``(H/2, 2, W/2, 2, C)`` for upsampling) into a padded buffer."""
        height = grid.shape[0] if height is None else height
        width = grid.shape[1] if width is None else width
        target = self._padded(role, height, width, grid.shape[-1])
        interior = target[1 : height + 1, 1 : width + 1]
        if grid.ndim == 5:
            interior = interior.unflatten(0, (height // 2, 2)).unflatten(2, (width // 2, 2))
        interior.copy_(grid)
        return target

    def _buffer(self, role: str, rows: int, channels: int) -> torch.Tensor:
        need = rows * channels
        store = self.storage.get(role)
        if store is None or store.numel() < need:
            store = self.storage[role] = torch.empty(need, dtype=torch.float64)
        return store[:need].view(rows, channels)

    def _padded(self, role: str, height: int, width: int, channels: int) -> torch.Tensor:
        """A ``(H + 2, W + 2, C)`` view with a zero border; the interior is the caller's to fill."""
        view = self._buffer(role, (height + 2) * (width + 2), channels).view(height + 2, width + 2, channels)
        view[0] = 0.0
        view[height + 1] = 0.0
        view[:, 0] = 0.0
        view[:, width + 1] = 0.0
        return view


def _body(padded: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Rows of a padded buffer's flat view that a 3x3 'same' convolution's output grid maps onto.

    Output pixel (y, x) sits at flat index ``y * (W + 2) + x`` of the grid; offset by ``W + 3`` that
    is padded pixel (y + 1, x + 1). Grid columns W and W + 1 land on the padding columns.
    """
    row = width + 2
    flat = padded.view(-1, padded.shape[2])
    return flat[row + 1 : row + 1 + height * row]


def _conv3x3(padded: torch.Tensor, out: torch.Tensor, layer: _Layer, scratch: _Session) -> None:
    """Exact 'same' 3x3 convolution of a zero-bordered ``(H + 2, W + 2, Cin)`` tensor into ``out``.

    ``out`` is ``(H * (W + 2), Cout)``: the output on an ``H x (W + 2)`` grid whose last two
    columns wrap around and are not part of the image. Output grid point ``p`` is
    ``sum_t flat[p + offset_t] @ taps[t]`` over the nine taps; three ways to group that sum, all
    exact (integers below 2**53 in any order), picked for speed by the layer's shape:

    * few inputs (``9 * Cin <= 64``): gather the nine shifted copies side by side, one DGEMM;
    * few outputs (``Cout <= 16``): one DGEMM against all nine taps at once, then nine shifted adds
      (:func:`_stacked_sums`);
    * otherwise nine contiguous shifted DGEMMs.
    """
    row = padded.shape[1]
    flat = padded.view(-1, padded.shape[2])
    count = out.shape[0] - 2  # the last grid row's two extra columns would read past the buffer
    body = out[:count]
    offsets = [dy * row + dx for dy, dx in (divmod(index, 3) for index in range(9))]
    cin, cout = layer.taps.shape[1], layer.taps.shape[2]
    if 9 * cin <= _GATHER_MAX:
        cols = scratch._buffer("gather", count, 9 * cin).view(count, 9, cin)
        for index, offset in enumerate(offsets):
            cols[:, index] = flat[offset : offset + count]
        torch.addmm(layer.bias, cols.view(count, 9 * cin), layer.taps.reshape(9 * cin, cout), out=body)
    elif cout <= _STACK_MAX:
        body.copy_(_stacked_sums(padded, layer, scratch)[:, :count].T)
    else:
        torch.addmm(layer.bias, flat[:count], layer.taps[0], out=body)
        for index in range(1, 9):
            body.addmm_(flat[offsets[index] : offsets[index] + count], layer.taps[index])
    out[count:] = 0.0


def _stacked_sums(padded: torch.Tensor, layer: _Layer, scratch: _Session) -> torch.Tensor:
    """A 3x3 layer with few outputs, channels first: ``(Cout, H * (W + 2))`` on the wrap-around grid.

    One DGEMM against all nine taps, transposed so each (tap, output channel) row of partial sums
    is contiguous over positions, then nine shifted contiguous adds. The last two grid points
    (which would read past the buffer) are zero.
    """
    row = padded.shape[1]
    flat = padded.view(-1, padded.shape[2])
    cout = layer.taps.shape[2]
    total = (padded.shape[0] - 2) * row
    count = total - 2
    partial = scratch._buffer("stack", 9 * cout, flat.shape[0])
    torch.mm(layer.stacked.T, flat.T, out=partial)
    summed = scratch._buffer("stack-sum", cout, total)
    summed[:, count:] = 0.0
    body = summed[:, :count]
    body.copy_(layer.bias[:, None].expand(cout, count))
    for index in range(9):
        dy, dx = divmod(index, 3)
        offset = dy * row + dx
        body.add_(partial[index * cout : (index + 1) * cout, offset : offset + count])
    return summed


def _rescale_(acc: torch.Tensor, shift: int, *, relu: bool) -> None:
    """In place: accumulator -> next activation integers, then clamp.

    With the ``2**(d-1)`` rounding offset already in the bias, ``floor(acc * 2**-d)`` is
    round-half-up of the true accumulator over ``2**d``: an exact multiplication and an exact floor.
    """
    if shift > 0:
        acc.mul_(math.ldexp(1.0, -shift)).floor_()
    elif shift < 0:
        acc.mul_(math.ldexp(1.0, -shift))
    acc.clamp_(0.0 if relu else -ACT_LIMIT, ACT_LIMIT)


# ---------------------------------------------------------------------------------------------
# Export: float decoder + calibration -> integer state (run once, by the training script)


@torch.inference_mode()
def calibrate(decoder: BaseDecoder, latents: Iterable[torch.Tensor]) -> dict[str, float]:
    """Largest magnitude at each activation point of the float decoder over ``latents``.

    ``latents`` are ``(N, 3, h, w)`` tensors as the receiver sees them (dequantised). Keys:
    ``input`` and the name of each layer of ``decoder.PLAN`` whose output feeds another layer.
    """
    dec = copy.deepcopy(decoder).double()
    plan = dec.PLAN
    peaks = {"input": 0.0, **{name: 0.0 for name, *_ in plan[:-1]}}
    for y in latents:
        x = y.to(torch.float64)
        peaks["input"] = max(peaks["input"], float(x.abs().max()))
        for name, _kernel, relu, post in plan[:-1]:
            x = getattr(dec, name)(x)
            x = torch.relu(x) if relu else x
            peaks[name] = max(peaks[name], float(x.abs().max()))
            if post == "upsample":
                x = x.repeat_interleave(2, 2).repeat_interleave(2, 3)
    return peaks


def export_state(decoder: BaseDecoder, peaks: dict[str, float]) -> dict:
    """Integer weights, biases and exponents of ``decoder`` (following its ``PLAN``) for ``peaks``.

    The result (ints and integer tensors only) is saved inside the weights file, so the exact
    decoder is covered by the weights' SHA-256 and never re-derived from floats at load time.
    """
    input_exp = _act_exp(peaks["input"])
    act_exp = input_exp
    layers: dict[str, dict] = {}
    plan = decoder.PLAN
    for index, (name, _kernel, _relu, _post) in enumerate(plan):
        last = index == len(plan) - 1
        module = getattr(decoder, name)
        weight = module.weight.detach().to(torch.float64)
        if isinstance(module, torch.nn.ConvTranspose2d):
            weight = conv_transpose_as_conv(weight)
        bias = module.bias.detach().to(torch.float64)
        peak = float(weight.abs().max())
        weight_exp = math.floor(math.log2(WEIGHT_LIMIT / peak)) if peak > 0 else 0
        w_int = torch.round(weight * math.ldexp(1.0, weight_exp))
        b_int = torch.round(bias * math.ldexp(1.0, act_exp + weight_exp))
        if float(b_int.abs().max()) > BIAS_LIMIT:
            raise ModelError(f"fixed-point export: bias of {name} exceeds 2**40 at its scale")
        out_exp = _act_exp(peaks[name]) if not last else 0
        layers[name] = {
            "weight": w_int.to(torch.int16),
            "bias": b_int.to(torch.int64),
            "weight_exp": int(weight_exp),
            "act_exp": int(out_exp),
        }
        act_exp = out_exp
    return {"input_exp": int(input_exp), "layers": layers}


def conv_transpose_as_conv(weight: torch.Tensor) -> torch.Tensor:
    """Weights of a stride-1 ConvTranspose2d ``(in, out, k, k)`` as Conv2d weights ``(out, in, k, k)``."""
    return weight.flip(2, 3).transpose(0, 1).contiguous()


def summarise_state(state: dict) -> dict:
    """The exponents of an exported state, for the JSON metadata and the model card."""
    return {
        "input_exp": state["input_exp"],
        "layers": {
            name: {"weight_exp": v["weight_exp"], "act_exp": v["act_exp"]} for name, v in state["layers"].items()
        },
    }


def _act_exp(peak: float) -> int:
    """Largest ``e`` with ``peak * margin * 2**e <= 2**16 - 1``."""
    peak = max(peak * CALIBRATION_MARGIN, 1e-6)
    return int(math.floor(math.log2(ACT_LIMIT / peak)))


def _check_exp(value: object, what: str) -> int:
    if not isinstance(value, int) or value not in _EXP_RANGE:
        raise ModelError(f"fixed-point decoder: {what} = {value!r} is not an integer in [-60, 60]")
    return value


def _check_integers(values: torch.Tensor, limit: int, what: str) -> None:
    if not bool(torch.all(values == torch.round(values))) or float(values.abs().max()) > limit:
        raise ModelError(f"fixed-point decoder: {what} is not integer-valued within +-{limit}")
