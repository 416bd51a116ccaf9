"""PyTorch modules that put the contract's pre- and post-processing inside the exported graph.

Training uses the same ``Normalize`` module, so the model learns on exactly the arithmetic that
runs at serving time (uint8 -> float -> (x/255 - mean)/std).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Normalize(nn.Module):
    """uint8-valued NHWC (or float NCHW in 0..255) -> normalized float NCHW.

    Why a module: the mean/std live as buffers in the ONNX graph, so a model file carries its own
    normalization and the function never needs to know which backbone it serves.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean255", m, persistent=False)
        self.register_buffer("inv_std255", 1.0 / s, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float NCHW with values 0..255."""
        return (x - self.mean255) * self.inv_std255


class MeanPad(nn.Module):
    """Pad a 0..255 NCHW image with each channel's mean: zero padding in normalized space.

    Why: once the normalization is folded into the stem convolution, the stem sees raw pixel
    values, and the zeros it used to pad with (in normalized units) are the channel means.
    Concatenating constant borders keeps the graph to cheap ops (no per-pixel arithmetic).
    """

    def __init__(self, mean255: torch.Tensor, pads: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.register_buffer("mean255", mean255.view(1, 3, 1, 1), persistent=False)
        self.top, self.bottom, self.left, self.right = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, _ = x.shape
        m = self.mean255
        parts = [m.expand(n, 3, h, self.left)] if self.left else []
        parts += [x] + ([m.expand(n, 3, h, self.right)] if self.right else [])
        x = torch.cat(parts, dim=3) if len(parts) > 1 else x
        w = x.shape[3]
        parts = [m.expand(n, 3, self.top, w)] if self.top else []
        parts += [x] + ([m.expand(n, 3, self.bottom, w)] if self.bottom else [])
        return torch.cat(parts, dim=2) if len(parts) > 1 else x


def _first_conv(net: nn.Module) -> tuple[str, nn.Conv2d] | None:
    for name, mod in net.named_modules():
        if isinstance(mod, nn.Conv2d):
            return name, mod
    return None


def fold_normalization(
    net: nn.Module, mean: Sequence[float], std: Sequence[float], size: tuple[int, int]
) -> nn.Sequential | None:
    """``MeanPad`` + ``net`` with ``(x/255 - mean)/std`` folded into its stem convolution.

    Why: the quantized graph then feeds the stem the raw uint8 pixels, which int8 represents
    exactly (scale 1, zero point 0); quantizing the normalized input instead costs about one grey
    level of noise on every pixel, which alone flipped ~5 % of the ImageNet model's top-1 labels
    on near-tie photos. It also removes two per-pixel float ops from the serving graph.
    Returns ``None`` when the stem is not a plain zero-padded convolution of the input (checked
    numerically by the caller too), so the exporter falls back to in-graph normalization.
    """
    found = _first_conv(net)
    if found is None:
        return None
    name, conv = found
    if (
        conv.in_channels != 3
        or conv.groups != 1
        or conv.padding_mode != "zeros"
        or isinstance(conv.padding, str)
    ):
        return None
    dev = conv.weight.device
    m255 = torch.tensor(mean, dtype=torch.float32, device=dev) * 255.0
    s255 = torch.tensor(std, dtype=torch.float32, device=dev) * 255.0
    folded = nn.Conv2d(
        3, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, bias=True
    ).to(dev)
    with torch.no_grad():
        w = conv.weight / s255.view(1, 3, 1, 1)
        folded.weight.copy_(w)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(folded.bias)
        folded.bias.copy_(bias - (w * m255.view(1, 3, 1, 1)).sum(dim=(1, 2, 3)))
    ph, pw = conv.padding
    pads = (ph, _used_pad(size[0], conv, 0), pw, _used_pad(size[1], conv, 1))
    body = copy.deepcopy(net)
    body.set_submodule(name, folded)
    return nn.Sequential(MeanPad(m255, pads), body)


def _used_pad(length: int, conv: nn.Conv2d, axis: int) -> int:
    """The trailing padding the convolution actually reads (often none with stride 2)."""
    k = conv.dilation[axis] * (conv.kernel_size[axis] - 1) + 1
    p, s = conv.padding[axis], conv.stride[axis]
    out = (length + 2 * p - k) // s + 1
    last = (out - 1) * s - p + k - 1  # last input index read, in unpadded coordinates
    return max(0, min(p, last - (length - 1)))


class ServingModel(nn.Module):
    """The exported graph: uint8 [N,H,W,3] -> probabilities [N,C].

    ``size`` given: normalization is folded into the stem convolution when that is exact (see
    ``fold_normalization``); otherwise it runs as its own ops (``Normalize``).
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.preprocess: nn.Module = Normalize(mean, std)
        self.net: nn.Module = net
        self.folded = False
        if size is not None:
            candidate = fold_normalization(net, mean, std, size)
            if candidate is not None and _same_output(self, candidate, size):
                self.preprocess, self.net, self.folded = nn.Identity(), candidate, True

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        logits = self.net(self.preprocess(x))
        return F.softmax(logits, dim=1)


def _same_output(plain: ServingModel, folded: nn.Module, size: tuple[int, int]) -> bool:
    """Whether the folded network computes what the plain one does (random images, eval mode)."""
    x = torch.randint(0, 256, (2, 3, *size), generator=torch.Generator().manual_seed(0)).float()
    x = x.to(next(plain.net.parameters()).device)
    training = plain.net.training
    plain.net.eval()
    folded.eval()
    with torch.no_grad():
        want = plain.net(plain.preprocess(x))
        got = folded(x)
    plain.net.train(training)
    return bool(torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max())))
