"""Fixtures for the unit tests of ``functions/media_classifier`` (no servers)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.model_factory import colour_model


@pytest.fixture
def colour_model_path(tmp_path: Path) -> Path:
    return colour_model(tmp_path / "colour.onnx")


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    """An image encoded in memory, as an upload would arrive."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()
