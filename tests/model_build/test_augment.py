"""Device-side augmentation."""

from __future__ import annotations

import pytest
import torch

from model_build import augment as aug


def test_parse_presets_and_overrides() -> None:
    assert aug.parse("default") == aug.AugmentConfig()
    cfg = aug.parse("light,rotate=0,padding=border")
    assert cfg.rotate == 0.0 and cfg.padding == "border" and cfg.scale_min == 0.85
    with pytest.raises(ValueError, match="unknown augmentation option"):
        aug.parse("spin=3")
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        aug.parse("wild")


def test_none_is_identity() -> None:
    x = torch.randint(0, 256, (4, 3, 12, 10)).float()
    assert torch.allclose(aug.augment(x, aug.parse("none")), x, atol=1e-3)


def test_augment_keeps_shape_range_and_varies() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 16, 16)).float()
    y = aug.augment(x, aug.parse("strong"), g)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255
    assert not torch.allclose(y, x)
    y2 = aug.augment(x, aug.parse("strong"), torch.Generator().manual_seed(0))
    assert torch.equal(y, y2), "same generator seed, same batch"
