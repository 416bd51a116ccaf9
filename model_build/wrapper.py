"""PyTorch modules that put the contract's pre- and post-processing inside the exported graph.

Training uses the same ``Normalize`` module, so the model learns on exactly the arithmetic that
runs at serving time (uint8 -> float -> (x/255 - mean)/std).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
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


class ServingModel(nn.Module):
    """The exported graph: uint8 [N,H,W,3] -> probabilities [N,C]."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.preprocess = Normalize(mean, std)
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        logits = self.net(self.preprocess(x))
        return torch.softmax(logits, dim=1)
