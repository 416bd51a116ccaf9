"""Batch augmentation on the training device (GPU or CPU), on uint8-valued float tensors.

Why on the device: decoding/resizing happens once (``data.prepare_split``), and per-sample
PIL/torchvision transforms in DataLoader workers would then be the bottleneck of a small
network on a big GPU. One affine warp per batch (random resized crop, flip, rotation) plus a
few tensor ops (colour jitter, random erasing) costs next to nothing there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """What ``augment`` does; ``parse`` turns ``preset,key=value,...`` into one."""

    scale_min: float = 0.70  # random resized crop: smallest area fraction kept
    ratio: float = 4.0 / 3.0  # ... aspect ratio range [1/ratio, ratio]
    hflip: float = 0.5  # probability of a horizontal flip
    rotate: float = 10.0  # max rotation, degrees
    brightness: float = 0.2  # multiplicative, +-
    contrast: float = 0.2
    saturation: float = 0.2
    erase: float = 0.25  # random erasing probability
    padding: str = "zeros"  # grid_sample padding: zeros | border | reflection

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "light": AugmentConfig(0.85, 1.15, 0.5, 5.0, 0.1, 0.1, 0.1, 0.0),
    "default": AugmentConfig(),
    "strong": AugmentConfig(0.5, 4.0 / 3.0, 0.5, 15.0, 0.3, 0.3, 0.3, 0.5),
}


def parse(spec: str) -> AugmentConfig:
    """``"default"``, ``"light,rotate=0"``, ``"erase=0.5,hflip=0"`` -> AugmentConfig."""
    cfg = PRESETS["default"]
    types = {f.name: f.type for f in fields(AugmentConfig)}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" not in part:
            if part not in PRESETS:
                raise ValueError(f"unknown augmentation preset {part!r}; known: {sorted(PRESETS)}")
            cfg = PRESETS[part]
            continue
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in types:
            raise ValueError(f"unknown augmentation option {key!r}; known: {sorted(types)}")
        cfg = replace(cfg, **{key: value if key == "padding" else float(value)})
    return cfg


def _uniform(n: int, lo: float, hi: float, device: torch.device, gen: torch.Generator | None):
    return torch.rand(n, device=device, generator=gen) * (hi - lo) + lo


def augment(
    x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None
) -> torch.Tensor:
    """Augment a float NCHW batch with values in 0..255; returns the same shape and range."""
    n, c, h, w = x.shape
    dev = x.device
    if cfg.scale_min < 1.0 or cfg.rotate > 0 or cfg.hflip > 0 or cfg.ratio > 1.0:
        area = _uniform(n, cfg.scale_min, 1.0, dev, gen)
        log_r = _uniform(n, -math.log(cfg.ratio), math.log(cfg.ratio), dev, gen)
        aspect = torch.exp(log_r)
        sx = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width / image width
        sy = torch.sqrt(area / aspect).clamp(max=1.0)
        tx = (torch.rand(n, device=dev, generator=gen) * 2 - 1) * (1 - sx)
        ty = (torch.rand(n, device=dev, generator=gen) * 2 - 1) * (1 - sy)
        ang = _uniform(n, -cfg.rotate, cfg.rotate, dev, gen) * (math.pi / 180.0)
        flip = torch.where(torch.rand(n, device=dev, generator=gen) < cfg.hflip, -1.0, 1.0)
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.stack(
            [
                torch.stack([sx * cos * flip, -sy * sin, tx], dim=1),
                torch.stack([sx * sin * flip, sy * cos, ty], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=cfg.padding, align_corners=False)
    if cfg.brightness > 0:
        x = x * _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, dev, gen).view(n, 1, 1, 1)
    if cfg.contrast > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        f = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, dev, gen).view(n, 1, 1, 1)
        x = (x - mean) * f + mean
    if cfg.saturation > 0 and c == 3:
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        f = _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, dev, gen).view(n, 1, 1, 1)
        x = (x - grey) * f + grey
    x = x.clamp(0, 255)
    if cfg.erase > 0:
        x = _random_erase(x, cfg.erase, gen)
    return x


def _random_erase(x: torch.Tensor, p: float, gen: torch.Generator | None) -> torch.Tensor:
    """Zhong et al.'s random erasing: a box of 2-25 % of the area, filled with noise."""
    n, _, h, w = x.shape
    dev = x.device
    area = _uniform(n, 0.02, 0.25, dev, gen) * h * w
    log_r = _uniform(n, math.log(0.3), math.log(3.3), dev, gen)
    eh = torch.sqrt(area * torch.exp(log_r)).clamp(1, h)
    ew = torch.sqrt(area / torch.exp(log_r)).clamp(1, w)
    y0 = torch.rand(n, device=dev, generator=gen) * (h - eh)
    x0 = torch.rand(n, device=dev, generator=gen) * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = (
        (ys >= y0.view(n, 1, 1))
        & (ys < (y0 + eh).view(n, 1, 1))
        & (xs >= x0.view(n, 1, 1))
        & (xs < (x0 + ew).view(n, 1, 1))
    )
    on = (torch.rand(n, device=dev, generator=gen) < p).view(n, 1, 1)
    mask = (box & on).unsqueeze(1)
    noise = torch.rand(x.shape, device=dev, generator=gen) * 255.0
    return torch.where(mask, noise, x)
