"""Backbone registry: weights lookup, head replacement, both backbones build and run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_build.backbones import BACKBONES, WEIGHTS_DIR_ENV, get_backbone


def test_unknown_backbone_lists_known() -> None:
    with pytest.raises(KeyError, match="mobilenet_v2"):
        get_backbone("resnet9000")


def test_weights_dir_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = get_backbone("mobilenet_v2")
    (tmp_path / b.weights_file).write_bytes(b"x")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    assert b.find_weights() == tmp_path / b.weights_file
    with pytest.raises(FileNotFoundError):
        b.find_weights(tmp_path / "missing.pth")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_build_pretrained_with_new_head(name: str) -> None:
    b = get_backbone(name)
    net = b.build(num_classes=4, image_size=64).eval()
    assert b.head(net).out_features == 4
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 4)
    # Only the head is new: a pretrained conv weight is not the skeleton's random init.
    skeleton = b.skeleton(4, 64)
    first = next(k for k, v in net.state_dict().items() if v.ndim == 4)
    assert not torch.equal(net.state_dict()[first], skeleton.state_dict()[first])
