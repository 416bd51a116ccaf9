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

After training, ``quantize_int8(..., activation_overrides=...)`` re-quantizes with those very
activation scales, so the shipped file computes what was trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

QuantParams = dict[str, tuple[float, int]]


def activation_params(int8_path: Path) -> QuantParams:
    """Scale and zero point of every activation ``QuantizeLinear`` in a QDQ model, by tensor."""
    model = onnx.load(str(int8_path))
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
    """Per-output-channel symmetric int8 rounding with a straight-through gradient."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        axes = tuple(range(1, w.ndim))
        scale = w.detach().abs().amax(dim=axes, keepdim=True).clamp_min(1e-12) / 127.0
        q = torch.clamp(torch.round(w / scale), -127, 127) * scale
        return w + (q - w).detach()


def fake_quant(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """uint8 round trip; gradients pass inside the representable range, not outside it."""
    lo, hi = (0 - zero_point) * scale, (255 - zero_point) * scale
    y = torch.clamp(x, lo, hi)
    q = (torch.clamp(torch.round(y / scale) + zero_point, 0, 255) - zero_point) * scale
    return y + (q - y).detach()


def _output_hook(scale: float, zp: int) -> Callable:
    def hook(_mod: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
        return fake_quant(out, scale, zp)

    return hook


def _input_hook(params: list[tuple[float, int]]) -> Callable:
    def hook(_mod: nn.Module, inp: tuple) -> tuple:
        x = inp[0]
        for scale, zp in params:
            x = fake_quant(x, scale, zp)
        return (x, *inp[1:])

    return hook


def attach(serving: nn.Module, params: QuantParams, float_nodes: Sequence[str] = ()) -> list[str]:
    """Make ``serving`` (a folded ``ServingModel``, BN already folded) simulate the int8 graph.

    ``float_nodes``: ONNX names of the convolutions the file keeps in float (``keep_float`` of
    ``quantize_int8``); their weights are not rounded. Their activations need nothing: the file
    has no ``QuantizeLinear`` for them, so ``params`` has no entry.
    Returns the activation tensors that were placed; every key of ``params`` and every float
    node must be found, or the simulation would silently differ from the file (``KeyError``).
    """
    placed: list[str] = []
    by_scope = {onnx_scope(name): mod for name, mod in serving.named_modules() if name}
    for tensor, (scale, zp) in params.items():
        scope, _, kind = tensor.rpartition("/")
        if kind.endswith(("GlobalAveragePool_output_0", "Flatten_output_0")):
            continue  # pooled features: functional in the network, handled below, in order
        # The output of the module at ``scope``: MeanPad (Concat), ReLU6 (Clip), a BN-folded
        # Conv2d, or a residual block (Add).
        mod = by_scope.get(scope)
        if mod is None:
            raise KeyError(f"no module for quantized tensor {tensor}")
        mod.register_forward_hook(_output_hook(scale, zp))
        placed.append(tensor)
    pooled = [t for t in params if t.endswith(("GlobalAveragePool_output_0", "Flatten_output_0"))]
    if pooled:
        head = _classifier(serving)
        head.register_forward_pre_hook(_input_hook([params[t] for t in pooled]))
        placed += pooled
    missing = set(params) - set(placed)
    if missing:
        raise KeyError(f"quantized tensors not simulated: {sorted(missing)}")
    float_scopes = {node.rpartition("/")[0] for node in float_nodes}
    unknown = float_scopes - set(by_scope)
    if unknown:
        raise KeyError(f"no module for float nodes: {sorted(unknown)}")
    for name, mod in serving.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear) and onnx_scope(name) not in float_scopes:
            parametrize.register_parametrization(mod, "weight", _FakeQuantWeight())
    return placed


def _classifier(serving: nn.Module) -> nn.Module:
    """The module whose input is the pooled feature vector (MobileNetV2: ``classifier``)."""
    for name, mod in serving.named_modules():
        if name.endswith("classifier"):
            return mod
    raise KeyError("no classifier module to quantize the pooled features in front of")


def strip(serving: nn.Module) -> None:
    """Remove the simulation (hooks and weight rounding), keeping the trained float weights."""
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
