"""Normalization folded into the stem convolution: exact, or not done at all."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_build.wrapper import MeanPad, ServingModel, _used_pad, fold_normalization

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def stem_net(**conv_kwargs) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, **conv_kwargs), nn.BatchNorm2d(4), nn.ReLU6(), nn.Conv2d(4, 2, 1)
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net.eval()


def images(size: tuple[int, int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (3, *size, 3), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("kwargs", "size"),
    [
        ({"stride": 2, "padding": 1}, (16, 16)),  # MobileNetV2's stem: bottom/right pad unread
        ({"stride": 2, "padding": 1}, (15, 17)),  # odd sizes: the trailing pad is read
        ({"stride": 1, "padding": 1}, (9, 12)),
        ({"stride": 1, "padding": 0}, (9, 12)),
    ],
)
def test_folded_model_computes_the_same_function(kwargs: dict, size: tuple[int, int]) -> None:
    net = stem_net(**kwargs)
    plain = ServingModel(net, MEAN, STD).eval()
    folded = ServingModel(net, MEAN, STD, size=size).eval()
    assert folded.folded and not plain.folded
    x = images(size)
    with torch.no_grad():
        assert torch.allclose(folded(x), plain(x), atol=1e-5)


def test_mean_pad_borders_hold_the_channel_means() -> None:
    mean255 = torch.tensor([10.0, 20.0, 30.0])
    out = MeanPad(mean255, (1, 0, 2, 1))(torch.zeros(1, 3, 4, 5))
    assert out.shape == (1, 3, 5, 8)
    assert torch.equal(out[0, :, 0, 0], mean255)  # top row
    assert torch.equal(out[0, :, 3, 1], mean255)  # left columns
    assert torch.equal(out[0, :, 3, 7], mean255)  # right column
    assert torch.equal(out[0, :, 1:, 2:7], torch.zeros(3, 4, 5))


def test_used_pad_counts_only_what_the_kernel_reads() -> None:
    conv = nn.Conv2d(3, 1, 3, stride=2, padding=1)
    assert _used_pad(224, conv, 0) == 0
    assert _used_pad(225, conv, 0) == 1
    assert _used_pad(10, nn.Conv2d(3, 1, 3, padding=1), 1) == 1


@pytest.mark.parametrize(
    "net",
    [
        nn.Sequential(nn.Conv2d(3, 3, 3, padding="same")),
        nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, groups=3)),
        nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")),
        nn.Sequential(nn.Linear(3, 3)),
    ],
)
def test_stems_that_cannot_fold_exactly_are_left_alone(net: nn.Module) -> None:
    assert fold_normalization(net, MEAN, STD, (8, 8)) is None
    assert not ServingModel(net, MEAN, STD, size=(8, 8)).folded


def test_a_fold_that_would_change_the_output_is_refused() -> None:
    """A zero-padding module in front of the first conv (TF 'same' style) breaks the fold:
    the padded zeros would become raw zeros, not the means. The numeric check catches it."""
    net = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, 2, 3)).eval()
    assert fold_normalization(net, MEAN, STD, (8, 8)) is not None  # structurally foldable...
    assert not ServingModel(net, MEAN, STD, size=(8, 8)).folded  # ...but not the same function
