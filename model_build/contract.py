"""The project's model contract, in one place, so export, tests and evaluation agree.

Every shipped model takes uint8 RGB NHWC at its declared size, normalizes inside the graph and
returns softmax probabilities. The serving side (``functions/media_classifier``) only reads the
metadata below; nothing else about a model is known to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
TASK = "classification"
RESIZE_POLICIES = ("center_crop", "squash")
ResizePolicy = Literal["center_crop", "squash"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelMeta:
    """What the ONNX file's ``metadata_props`` must carry (the serving side needs nothing else)."""

    name: str
    version: str
    labels: tuple[str, ...]
    resize: ResizePolicy
    input_size: tuple[int, int]  # (height, width)
    task: str = TASK

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, not {self.resize!r}")
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be at least two distinct names")

    def props(self) -> dict[str, str]:
        """The string-to-string map stored as ONNX ``metadata_props``."""
        return {
            "labels": json.dumps(list(self.labels)),
            "resize": self.resize,
            "name": self.name,
            "version": self.version,
            "task": self.task,
        }

    @classmethod
    def from_props(cls, props: dict[str, str], input_size: tuple[int, int]) -> ModelMeta:
        """Parse ``metadata_props`` back (used by tests and evaluation to check the contract)."""
        missing = {"labels", "resize", "name", "version", "task"} - props.keys()
        if missing:
            raise ValueError(f"metadata_props lacks {sorted(missing)}")
        return cls(
            name=props["name"],
            version=props["version"],
            labels=tuple(json.loads(props["labels"])),
            resize=props["resize"],  # type: ignore[arg-type]
            input_size=input_size,
            task=props["task"],
        )
