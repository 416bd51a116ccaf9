"""A PyTorch simulation of the int8 graph ONNX Runtime runs, for quantization-aware distillation.

Why: post-training quantization leaves MobileNetV2's top-1 agreeing with the float original on
only ~84 % of near-tie photos: rounding noise from ~65 activations adds up. Fine-tuning the float
weights *through* a faithful simulation of that rounding (straight-through estimator), with the
original's probabilities as targets, teaches the network to be robust to exactly the noise it
will meet. The simulation mirrors ``quantize.quantize_int8``'s QDQ model:

* weights: symmetric per-output-channel int8, scale ``max|w| / 127``, on BatchNorm-folded
  convolutions (ONNX export folds BN the same way);
* activations: uint8 with the scale and zero point of the QDQ model's ``QuantizeLinear`` for the
  same tensor, located by the ONNX scope names the TorchScript exporter derives from module
  paths; ReLU6 is applied before rounding, as ONNX Runtime folds it into the quantization range.

Optionally (``learn_scales``) the activation scales are trained too (LSQ), within what the file
can express. ``dyadic`` simulates the file ``dyadic-scales`` makes: power-of-two activation
scales (rounded in the log domain, straight through), weight scales moved up to 4 significant
bits with the integers rounded a second time, even zero points after residual additions;
there the tensors ``dyadic.rescalable`` names keep free scales (the pass rescales them, and
their layers' weights round as rescaled) and the other ReLU6 outputs are ``lift``-ed.
``narrowed`` tensors are those ``narrow-inputs`` will give 7 bits (the inputs of dense layers):
simulated with twice the scale and half the zero point, as the file will hold
them, while the parameters kept are the 8-bit ones the quantizer writes before narrowing.
After training, ``quantize_int8(..., activation_overrides=...)`` re-quantizes with those very
activation scales (and ``narrow-inputs`` narrows the same tensors), so the shipped file
computes what was trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from model_build import exact_float
from model_build.dyadic import (
    WEIGHT_SCALE_BITS,
    Addition,
    Rescaled,
    even_zero_point,
    rescale_factor,
    tie_free,
)
from model_build.wrapper import MeanPad

QuantParams = dict[str, tuple[float, int]]


def activation_params(int8: Path | onnx.ModelProto) -> QuantParams:
    """Scale and zero point of every activation ``QuantizeLinear`` in a QDQ model, by tensor."""
    model = int8 if isinstance(int8, onnx.ModelProto) else onnx.load(str(int8))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out: QuantParams = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            out[node.input[0]] = (float(inits[node.input[1]]), int(inits[node.input[2]]))
    return out


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every ``Conv2d`` directly followed by ``BatchNorm2d`` in a ``Sequential`` (in place).

    The BN becomes ``nn.Identity``, which the ONNX exporter elides, so tensor names stay the same.
    """
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        kids = list(seq)
        for i in range(len(kids) - 1):
            if isinstance(kids[i], nn.Conv2d) and isinstance(kids[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(kids[i].eval(), kids[i + 1].eval())
                seq[i + 1] = nn.Identity()
    return module


def onnx_scope(path: str) -> str:
    """ONNX scope of a module path as the TorchScript exporter writes it.

    ``net.1.features.3.conv.0.2`` -> ``/net/net.1/features/features.3/conv/conv.0/conv.0.2``:
    each numeric component is prefixed with the previous component.
    """
    parts: list[str] = []
    for p in path.split("."):
        parts.append(f"{parts[-1]}.{p}" if p.isdigit() and parts else p)
    return "/" + "/".join(parts)


class _FakeQuantWeight(nn.Module):
    """Per-output-channel symmetric int8 rounding with a straight-through gradient.

    ``dyadic``: then the scale moves up to 4 significant bits and the integers are rounded
    again, ``round(q * s / s')``, as ``dyadic-scales`` rewrites the file's weights.
    ``ratio``: the factor that pass gives the layer's weight scales before rounding them (its
    rescaled output's ``alpha`` over its rescaled input's, ``dyadic.rescalable``); the
    simulation keeps the network unscaled, so it rounds at ``dyadic_ceil(s * r) / r``."""

    def __init__(
        self, dyadic: bool = False, ratio: Callable[[], float | torch.Tensor] | None = None
    ) -> None:
        super().__init__()
        self.dyadic = dyadic
        self.ratio = ratio

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        axes = tuple(range(1, w.ndim))
        scale = w.detach().abs().amax(dim=axes, keepdim=True).clamp_min(1e-12) / 127.0
        q = torch.clamp(torch.round(w / scale), -127, 127)
        if self.dyadic:
            r = torch.as_tensor(self.ratio() if self.ratio else 1.0).to(scale).double()
            wide = dyadic_ceil(scale.double() * r, WEIGHT_SCALE_BITS) / r
            q = torch.clamp(torch.round(q.double() * (scale.double() / wide)), -127, 127)
            q, scale = q.to(w.dtype), wide.to(w.dtype)
        return w + (q * scale - w).detach()


class _WideWeight(nn.Module):
    """``exact_float.wide_weights`` for a float prefix's convolution, straight-through: the
    weights times ``ratio`` on multiples of a power of two up to ``largest`` per channel."""

    def __init__(self, ratio: float, input_code: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.input_code = input_code

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        largest = exact_float.largest_weight(int(np.prod(w.shape[1:])), self.input_code)
        v = w.detach().double() * self.ratio
        flat = v.abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-30)
        unit = torch.exp2(torch.ceil(torch.log2(flat / largest)))
        rounded = (torch.round(v / unit) * unit / self.ratio).to(w.dtype)
        return w + (rounded - w).detach()


def dyadic_ceil(scale: torch.Tensor, bits: int) -> torch.Tensor:
    """``model_build.dyadic.dyadic_ceil`` for tensors: the next number with ``bits`` bits."""
    exponent = torch.floor(torch.log2(scale))
    steps = 2.0 ** (bits - 1)
    return torch.ceil(scale / 2.0**exponent * steps - 1e-9) / steps * 2.0**exponent


def pow2(scale: float | torch.Tensor) -> float | torch.Tensor:
    """The nearest power of two (in log scale), with a straight-through gradient for tensors."""
    if isinstance(scale, torch.Tensor):
        return scale + (torch.exp2(torch.round(torch.log2(scale))) - scale).detach()
    return float(2.0 ** np.round(np.log2(scale)))


def rescaling(scale: float | torch.Tensor) -> float | torch.Tensor:
    """``dyadic.rescale_factor`` of a (learned) scale; no gradient (it only sets rounding)."""
    if isinstance(scale, torch.Tensor):
        s = scale.detach().double()
        return torch.exp2(torch.floor(torch.log2(s))) / s
    return rescale_factor(scale)


def pow2_floor(value: float) -> float:
    return float(2.0 ** np.floor(np.log2(value)))


def pow2_ceil(value: float) -> float:
    return float(2.0 ** np.ceil(np.log2(value)))


def fake_quant(
    x: torch.Tensor, scale: float | torch.Tensor, zero_point: int, levels: int = 255
) -> torch.Tensor:
    """uint8 round trip as ONNX Runtime does it (``round(x / scale) + zero_point``, saturated;
    ``levels``: another number of steps, as ``exact_float``'s links have).

    Gradients: to ``x`` inside the representable range only (straight-through rounding); to a
    tensor ``scale``, LSQ's (Esser et al. 2020): ``round(v) - v`` inside, the bound outside.
    """
    v = x / scale
    lo, hi = -zero_point, levels - zero_point
    inside = torch.clamp(v, lo, hi)  # carries the gradients
    return (inside + (torch.clamp(torch.round(v), lo, hi) - inside).detach()) * scale


#: Attribute of the serving module holding learnable log activation scales (``learn_scales``).
SCALES = "act_log_scales"
#: ONNX Runtime's quantizer removes ReLU6 (``Clip``) nodes and lets their output's uint8 range do
#: the clipping, so such a tensor's range must stay within 0..6 or the file would stop clipping.
RELU6_MAX = 6.0
#: A dyadic file cannot clip a ReLU6 output at 6: its power-of-two scales put the top of the
#: uint8 range at 3.98 (2**-6 x 255) or 7.97 (2**-5 x 255). Rescaling (``dyadic.rescalable``)
#: keeps 6 inside the blocks; the other ReLU6 outputs (the float stem's, the last 1x1's, read
#: by the pooling) are "lifted" instead: the student clips them at 8, so their range may reach
#: 7.97 and the file's uint8 range does the clipping. Measured on the float network: the
#: last 1x1 clipped at 4 turns 2 of the 84 check images (KL 0.0074), clipped at 8 none (0.0003).
LIFTED_MAX = 8.0


def is_pooled(tensor: str) -> bool:
    return tensor.endswith(("GlobalAveragePool_output_0", "Flatten_output_0"))


def scale_cap(
    tensor: str, scale: float, zero_point: int, narrowed: bool = False, top: float = RELU6_MAX
) -> float:
    """Largest scale the file can honour for ``tensor`` (never below its calibrated ``scale``).

    A narrowed tensor's uint8 range spans twice its (8-bit) scale: the cap halves. ``top``: the
    network's clip (``LIFTED_MAX`` for a lifted ReLU6)."""
    if tensor.endswith("Clip_output_0") and zero_point < 255:
        if narrowed:
            return max(scale, top / (2 * (255 - narrow_zero_point(zero_point))))
        return max(scale, top / (255 - zero_point))
    return float("inf")


def liftable(
    params: QuantParams, rescaled: Sequence[Rescaled], narrowed: Sequence[str] = ()
) -> list[str]:
    """The ReLU6 outputs of a dyadic file to lift (``LIFTED_MAX``): those not rescaled."""
    inside = {tensor for tensor, _, _ in rescaled}
    return [
        t
        for t, (_, zp) in params.items()
        if t.endswith("Clip_output_0") and zp == 0 and t not in inside and t not in narrowed
    ]


def lift(serving: nn.Module, tensors: Sequence[str]) -> None:
    """Clip the ReLU6 outputs ``tensors`` at ``LIFTED_MAX`` instead (in place; the module keeps
    its path, so the exported ``Clip`` keeps its tensor name)."""
    scopes = {t.rpartition("/")[0] for t in tensors}
    found = set()
    for name, mod in list(serving.named_modules()):
        if onnx_scope(name) in scopes and isinstance(mod, nn.ReLU6 | nn.Hardtanh):
            parent, _, child = name.rpartition(".")
            serving.get_submodule(parent).add_module(child, nn.Hardtanh(0.0, LIFTED_MAX))
            found.add(onnx_scope(name))
    if scopes - found:
        raise KeyError(f"no ReLU6 module for lifted tensors: {sorted(scopes - found)}")


def narrow_zero_point(zero_point: int) -> int:
    """The zero point ``narrow-inputs`` writes (half, rounded as numpy rounds)."""
    return int(np.round(zero_point / 2))


def _scale_keys(params: QuantParams) -> dict[str, str | None]:
    """Parameter key per tensor; the pooled tensors share one (ONNX Runtime gives ``Flatten`` the
    quantization parameters of its input, the pooling, whatever an override says); the model's
    pixel input (``Concat`` of the stem's padding, scale 1: exact uint8 pixels) has none."""
    keys: dict[str, str | None] = {
        t: None if "Concat" in t else f"a{i}" for i, t in enumerate(params)
    }
    pooled = [t for t in params if is_pooled(t)]
    for t in pooled[1:]:
        keys[t] = keys[pooled[0]]
    return keys


@dataclass(frozen=True)
class Bounds:
    """The scales the file can hold for one tensor (in the 8-bit units ``params`` use).

    ``cap``: ``scale_cap``. ``floor``: never narrower than this (a 7-bit tensor whose range
    shrinks below the calibrated one lets more values reach codes 129..255, where U8S8 pairs
    can saturate again). ``dyadic``: powers of two (``model_build.dyadic``). ``even``: the
    file's zero point is made even (a residual addition's, in a dyadic file)."""

    cap: float = float("inf")
    floor: float = 0.0
    dyadic: bool = False
    even: bool = False

    def apply(self, scale: float | torch.Tensor) -> float | torch.Tensor:
        lo, hi = self.floor, self.cap
        if self.dyadic:
            lo = pow2_ceil(lo) if lo > 0 else 0.0
            hi = pow2_floor(hi) if np.isfinite(hi) else hi
            scale = pow2(scale)
        if isinstance(scale, torch.Tensor):
            return torch.clamp(scale, min=lo, max=hi)
        return min(max(scale, lo), hi)


def tensor_bounds(
    params: QuantParams,
    calibrated: QuantParams | None = None,
    narrowed: Sequence[str] = (),
    dyadic: bool = False,
    floors: QuantParams | None = None,
    rescaled: Sequence[Rescaled] = (),
    lifted: Sequence[str] = (),
) -> dict[str, Bounds]:
    """``Bounds`` per tensor: caps of the ``calibrated`` scales where known, ``floors`` (the
    calibrated scales of a post-training file) for the ``narrowed`` tensors where given; the
    ``rescaled`` tensors of a dyadic file keep any scale (the pass makes it a power of two),
    the ``lifted`` ones reach up to ``LIFTED_MAX``."""
    ref = calibrated or {t: (0.0, zp) for t, (_, zp) in params.items()}
    seven = set(narrowed)
    free = {tensor for tensor, _, _ in rescaled}
    return {
        t: Bounds(
            cap=scale_cap(t, *ref[t], t in seven, LIFTED_MAX if t in lifted else RELU6_MAX),
            floor=floors[t][0] if floors is not None and t in seven else 0.0,
            dyadic=dyadic and t not in free,
            even=dyadic and t.endswith("Add_output_0"),
        )
        for t in params
    }


def _scale(
    serving: nn.Module, key: str | None, fixed: float, bounds: Bounds
) -> float | torch.Tensor:
    learned = getattr(serving, SCALES, None)
    if key is None:
        return fixed  # the pixels: scale 1, exact
    if learned is None:
        return bounds.apply(fixed)
    # fixed * exp(0) is exactly ``fixed``: the untrained simulation is the file's, to the bit
    return bounds.apply(fixed * learned[key].exp())


def _quant(
    x: torch.Tensor, scale: float | torch.Tensor, zp: int, bounds: Bounds, narrowed: bool
) -> torch.Tensor:
    """Round as the file does: 7 bits (twice the scale, half the zero point) where narrowed."""
    if narrowed:
        scale, zp = 2 * scale, narrow_zero_point(zp)
    if bounds.even and zp % 2:
        zp = int(even_zero_point(np.asarray(zp, np.uint8)))
    return fake_quant(x, scale, zp)


ScaleOf = Callable[[str], "float | torch.Tensor"]


def _output_hook(
    scale_of: ScaleOf, tensor: str, zp: int, bounds: Bounds, narrowed: bool
) -> Callable:
    def hook(_mod: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
        return _quant(out, scale_of(tensor), zp, bounds, narrowed)

    return hook


def _input_hook(scale_of: ScaleOf, params: list[tuple[str, int, Bounds, bool]]) -> Callable:
    def hook(_mod: nn.Module, inp: tuple) -> tuple:
        x = inp[0]
        for tensor, zp, bounds, narrowed in params:
            x = _quant(x, scale_of(tensor), zp, bounds, narrowed)
        return (x, *inp[1:])

    return hook


def _larger(a: float | torch.Tensor, b: float | torch.Tensor) -> float | torch.Tensor:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        ref = a if isinstance(a, torch.Tensor) else b
        assert isinstance(ref, torch.Tensor)
        return torch.maximum(torch.as_tensor(a).to(ref), torch.as_tensor(b).to(ref))
    return max(a, b)


def _tied(scales: dict, additions: Sequence[Addition], narrowed: set[str]) -> dict:
    """``dyadic.tie_free`` on scales in the 8-bit units ``params`` use (a narrowed tensor's
    file scale is twice its parameter)."""
    if not additions:
        return scales
    unit = {t: 2.0 if t in narrowed else 1.0 for t in scales}
    tied = tie_free({t: v * unit[t] for t, v in scales.items()}, list(additions), _larger)
    return {t: v / unit[t] for t, v in tied.items()}


def attach(
    serving: nn.Module,
    params: QuantParams,
    float_nodes: Sequence[str] = (),
    learn_scales: bool = False,
    narrowed: Sequence[str] = (),
    dyadic: bool = False,
    floors: QuantParams | None = None,
    additions: Sequence[Addition] = (),
    rescaled: Sequence[Rescaled] = (),
    lifted: Sequence[str] = (),
) -> list[str]:
    """Make ``serving`` (a folded ``ServingModel``, BN already folded) simulate the int8 graph.

    ``float_nodes``: ONNX names of the convolutions the file keeps in float (``keep_float`` of
    ``quantize_int8``); their weights are not rounded. Their activations need nothing: the file
    has no ``QuantizeLinear`` for them, so ``params`` has no entry.
    ``learn_scales``: the activation scales become parameters (``log(scale / initial)``, under
    ``SCALES``), starting from ``params`` (zero points stay), within what the file can express
    (``scale_cap``, ``_scale_keys``); ``learned_params`` reads them back.
    ``narrowed``: tensors simulated at 7 bits (see the module docstring).
    ``dyadic``: the file ``dyadic-scales`` makes (power-of-two activation scales, 4-bit weight
    scales); ``floors``: the narrowest scales the ``narrowed`` tensors may take (``Bounds``);
    ``additions``: the file's residual additions, whose scales ``dyadic.tie_free`` ties.
    ``rescaled``: with ``dyadic``, the tensors the pass rescales (``dyadic.rescalable``): their
    scales stay free and their writers' and readers' weights round as the pass rounds them;
    ``lifted``: ReLU6 outputs clipped at ``LIFTED_MAX`` instead (``lift``).
    With ``dyadic`` the stem's input is padded with whole grey levels, as the file's is
    (``dyadic.whole_grey_padding``; an int8 stem's input quantizer rounds them anyway).
    Returns the activation tensors that were placed; every key of ``params`` and every float
    node must be found, or the simulation would silently differ from the file (``KeyError``).
    """
    keys = _scale_keys(params)
    seven = set(narrowed)
    bounds = tensor_bounds(params, params, narrowed, dyadic, floors, rescaled, lifted)
    lift(serving, lifted)
    for pad in (m for m in serving.modules() if isinstance(m, MeanPad) and dyadic):
        pad.mean255.round_()
    if seven - set(params):
        raise KeyError(f"narrowed tensors without parameters: {sorted(seven - set(params))}")

    # Tied scales depend on every tensor's scale: computed once per forward (the cache is
    # emptied as ``serving`` starts one), not once per hook.
    tied: dict[str, float | torch.Tensor] = {}

    def scale_of(tensor: str) -> float | torch.Tensor:
        if not additions:
            return _scale(serving, keys[tensor], params[tensor][0], bounds[tensor])
        if not tied:
            own = {t: _scale(serving, keys[t], sc, bounds[t]) for t, (sc, _) in params.items()}
            tied.update(_tied(own, additions, seven))
        return tied[tensor]

    if additions:
        serving.register_forward_pre_hook(lambda _mod, _inp: tied.clear())

    if learn_scales:
        learnable = sorted({k for k in keys.values() if k is not None})
        init = {k: nn.Parameter(torch.zeros(())) for k in learnable}  # log(scale / initial)
        setattr(serving, SCALES, nn.ParameterDict(init))
    placed: list[str] = []
    by_scope = {onnx_scope(name): mod for name, mod in serving.named_modules() if name}
    for tensor, (_, zp) in params.items():
        scope = tensor.rpartition("/")[0]
        if is_pooled(tensor):
            continue  # pooled features: functional in the network, handled below, in order
        # The output of the module at ``scope``: MeanPad (Concat), ReLU6 (Clip), a BN-folded
        # Conv2d, or a residual block (Add).
        mod = by_scope.get(scope)
        if mod is None:
            raise KeyError(f"no module for quantized tensor {tensor}")
        hook = _output_hook(scale_of, tensor, zp, bounds[tensor], tensor in seven)
        mod.register_forward_hook(hook)
        placed.append(tensor)
    pooled = [t for t in params if is_pooled(t)]
    if pooled:
        head = _classifier(serving)
        head.register_forward_pre_hook(
            _input_hook(scale_of, [(t, params[t][1], bounds[t], t in seven) for t in pooled])
        )
        placed += pooled
    missing = set(params) - set(placed)
    if missing:
        raise KeyError(f"quantized tensors not simulated: {sorted(missing)}")
    float_scopes = {node.rpartition("/")[0] for node in float_nodes}
    unknown = float_scopes - set(by_scope)
    if unknown:
        raise KeyError(f"no module for float nodes: {sorted(unknown)}")
    # Per layer scope: the rescaled tensors it writes (factor alpha) and reads (1 / alpha).
    sides: dict[str, list[tuple[str, int]]] = {}
    for tensor, writer, readers in rescaled if dyadic else ():
        sides.setdefault(writer.rpartition("/")[0], []).append((tensor, 1))
        for reader in readers:
            sides.setdefault(reader.rpartition("/")[0], []).append((tensor, -1))
    unknown = set(sides) - set(by_scope)
    if unknown:
        raise KeyError(f"no module for rescaled layers: {sorted(unknown)}")

    def ratio_of(scope: str) -> Callable[[], float | torch.Tensor] | None:
        if scope not in sides:
            return None

        def ratio() -> float | torch.Tensor:
            r: float | torch.Tensor = 1.0
            for tensor, power in sides[scope]:
                r = r * rescaling(scale_of(tensor)) ** power
            return r

        return ratio

    for name, mod in serving.named_modules():
        scope = onnx_scope(name)
        if isinstance(mod, nn.Conv2d | nn.Linear) and scope not in float_scopes:
            quant = _FakeQuantWeight(dyadic, ratio_of(scope))
            parametrize.register_parametrization(mod, "weight", quant)
    return placed


def attach_exact_prefix(
    serving: nn.Module, plan: exact_float.Plan, rounded: dict[str, exact_float.Rounding]
) -> None:
    """Make ``serving``'s float prefix compute what ``exact_float.rewrite`` makes of it: each
    planned link quantized to its codes ``0..2**bits`` over its range (the file's rescaled
    power-of-two step is that step times the factor its readers divide out again), each
    convolution in ``rounded`` (``exact_float.roundings``) with its wide weights and, writing a
    link, its bias on the link's step (``exact_float.fused``). Call after ``attach`` (with
    ``dyadic``)."""
    by_scope = {onnx_scope(name): mod for name, mod in serving.named_modules() if name}
    shifts: dict[str, torch.Tensor] = {}  # per forward pass: each link writer's bias shift
    for node, r in rounded.items():
        mod = by_scope.get(node.rpartition("/")[0])
        if not isinstance(mod, nn.Conv2d):
            raise KeyError(f"no convolution for the prefix node {node}")
        parametrize.register_parametrization(mod, "weight", _WideWeight(r.ratio, r.input_code))
        if r.output_step is not None or r.reads is not None:
            # before any rounding of its output (levels, or the int8 tensor after the prefix)
            mod.register_forward_hook(_fused_bias_hook(r, shifts), prepend=True)
    for tensor, (lo, hi, bits) in plan.items():
        mod = by_scope.get(tensor.rpartition("/")[0])
        if mod is None:
            raise KeyError(f"no module for the prefix tensor {tensor}")
        factor, step, zero_point = exact_float.grid(lo, hi, bits)
        mod.register_forward_hook(_levels_hook(step / factor, zero_point, 2**bits))


def _levels_hook(step: float, zero_point: int, levels: int) -> Callable:
    def hook(_mod: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
        return fake_quant(out, step, zero_point, levels)

    return hook


def _fused_bias_hook(r: exact_float.Rounding, shifts: dict[str, torch.Tensor]) -> Callable:
    """The convolution's bias as ``exact_float.rewrite`` leaves it, in the unscaled network:
    less the ``compensation`` of its input link's shift; writing a link, its share of the
    input's zero point kept exactly and the rest rounded to the output step, the shift
    recorded for the readers. Constants to training (straight through)."""
    step = float(r.output_step or 0.0) / r.out_factor
    input_step = r.input_step / r.in_factor

    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
        w = mod.weight.detach()
        b0 = mod.bias.detach() if mod.bias is not None else torch.zeros(len(w), device=w.device)
        b = b0
        if r.reads in shifts:
            raw = mod.parametrizations.weight.original.detach()
            b = b - exact_float.compensation(raw.double(), shifts[r.reads]).to(b)
        if r.writes is not None:
            d = r.input_zero_point * input_step * w.sum(dim=tuple(range(1, w.ndim)))
            on_step = d + torch.round((b - d) / step) * step
            shifts[r.writes] = (on_step - b).double()
            b = on_step
        return out + (b - b0).view(1, -1, *[1] * (out.ndim - 2))

    return hook


def _classifier(serving: nn.Module) -> nn.Module:
    """The module whose input is the pooled feature vector (MobileNetV2: ``classifier``)."""
    for name, mod in serving.named_modules():
        if name.endswith("classifier"):
            return mod
    raise KeyError("no classifier module to quantize the pooled features in front of")


def learned_params(
    serving: nn.Module,
    params: QuantParams,
    narrowed: Sequence[str] = (),
    dyadic: bool = False,
    floors: QuantParams | None = None,
    additions: Sequence[Addition] = (),
    rescaled: Sequence[Rescaled] = (),
    lifted: Sequence[str] = (),
) -> QuantParams:
    """``params`` as the simulation used them: learned (``attach(..., learn_scales=True)``),
    within the same ``Bounds``, as the file will hold them (``representable``)."""
    learned = getattr(serving, SCALES, None)
    keys = _scale_keys(params)
    current = {
        t: (
            s if learned is None or keys[t] is None else s * float(learned[keys[t]].detach().exp()),
            zp,
        )
        for t, (s, zp) in params.items()
    }
    return representable(current, params, narrowed, dyadic, floors, additions, rescaled, lifted)


def representable(
    params: QuantParams,
    calibrated: QuantParams | None = None,
    narrowed: Sequence[str] = (),
    dyadic: bool = False,
    floors: QuantParams | None = None,
    additions: Sequence[Addition] = (),
    rescaled: Sequence[Rescaled] = (),
    lifted: Sequence[str] = (),
) -> QuantParams:
    """``params`` as the file will hold them: within ``tensor_bounds`` (ReLU6 outputs capped,
    of the ``calibrated`` scale where known), the pooled tensors given the pooling's
    (``_scale_keys``); the pixels (``Concat``, scale 1) as they are."""
    bounds = tensor_bounds(params, calibrated, narrowed, dyadic, floors, rescaled, lifted)
    scales = {t: s if "Concat" in t else float(bounds[t].apply(s)) for t, (s, _) in params.items()}
    scales = _tied(scales, additions, set(narrowed))
    out = {t: (float(scales[t]), zp) for t, (_, zp) in params.items()}
    pooled = [t for t in out if is_pooled(t)]
    for t in pooled[1:]:
        out[t] = out[pooled[0]]
    return out


def strip(serving: nn.Module) -> None:
    """Remove the simulation (hooks, weight rounding, learned scales), keeping the float weights.

    Read ``learned_params`` first: the scales go with the simulation.
    """
    if hasattr(serving, SCALES):
        delattr(serving, SCALES)
    for mod in serving.modules():
        mod._forward_hooks.clear()
        mod._forward_pre_hooks.clear()
        if parametrize.is_parametrized(mod, "weight"):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)


def kl_to(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Mean KL(teacher || student) over a batch of probability rows."""
    t = teacher.clamp_min(1e-12)
    return (t * (t.log() - student.clamp_min(1e-12).log())).sum(1).mean()


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows whose top-1 class is the same."""
    return float((a.argmax(1) == b.argmax(1)).mean())
