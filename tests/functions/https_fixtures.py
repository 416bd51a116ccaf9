"""Shared pieces of the HTTPS unit tests: a registry of the colour model, settings, images."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from media_classifier.api.on_demand import RequestSettings
from media_classifier.inference.model import ModelRegistry
from media_classifier.inference.pipeline import Limits
from tests.model_factory import colour_model


def colour_registry(directory: Path) -> ModelRegistry:
    """A registry serving one model, ``colour`` (red/green/blue, answers known)."""
    colour_model(directory / "colour.onnx")
    return ModelRegistry(directory)


def settings(**overrides: object) -> RequestSettings:
    values: dict[str, object] = {
        "default_model": "colour",
        "top_k": 3,
        "limits": Limits(),
        "max_request_bytes": 1024 * 1024,
        "prefix": "uploads/",
        "routes": {},
    }
    values.update(overrides)
    return RequestSettings(**values)  # type: ignore[arg-type]


def png(colour: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


class LocalBlob:
    """Just enough of google.cloud.storage.Blob for ``classify_stored``: size and download."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def download_to_filename(self, filename: str) -> None:
        Path(filename).write_bytes(self.data)


class LocalBucket:
    """Objects held in memory, by name; records which names were asked for."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.asked: list[str] = []

    def get_blob(self, blob_name: str) -> LocalBlob | None:
        self.asked.append(blob_name)
        data = self.objects.get(blob_name)
        return None if data is None else LocalBlob(data)
