"""A MobileNetV2 in miniature (same module names), for int8 simulation and file tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_build.contract import ModelMeta

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = (32, 32)
META = ModelMeta("tinymobile", "0.1.0", ("a", "b", "c"), "squash", SIZE)


class Block(nn.Module):
    """A residual block named like MobileNetV2's (``conv`` inside, ``x + conv(x)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Sequential(
                nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6()
            ),
            nn.Conv2d(8, 8, 1, bias=False),
            nn.BatchNorm2d(8),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class TinyMobile(nn.Module):
    """MobileNetV2's layout in miniature: features, functional pooling, classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()),
            Block(),
            nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def tiny() -> nn.Module:
    torch.manual_seed(0)
    net = TinyMobile()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
    return net.eval()


def smooth_images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 3, 8, 8)).astype(np.float32)
    big = F.interpolate(torch.from_numpy(small), size=SIZE, mode="bilinear")
    return big.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
