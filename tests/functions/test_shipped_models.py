"""The models shipped in functions/models keep the contract and give sane answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from media_classifier.model import MODELS_DIR, Model, ModelRegistry
from media_classifier.pipeline import Limits, classify_file

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "images"
SHIPPED = sorted(MODELS_DIR.glob("*.onnx"))


def test_every_shipped_model_has_its_own_id() -> None:
    """Ids are file names up to the first dot: two files with one id would shadow each other."""
    keys = [path.name.split(".", 1)[0] for path in SHIPPED]
    assert len(keys) == len(set(keys)), keys


def test_the_default_model_is_shipped() -> None:
    assert (MODELS_DIR / "imagenet_mobilenet_v2.int8.onnx").is_file()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_model_contract(path: Path) -> None:
    model = Model.load(path, threads=1)
    assert model.task == "classification"
    assert (path.with_suffix("").with_suffix(".md")).is_file(), "every model ships its card"
    h, w = model.input_size
    probs = model.predict(np.random.default_rng(0).integers(0, 255, (2, h, w, 3), np.uint8))
    assert probs.shape == (2, len(model.labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_imagenet_model_is_small_enough() -> None:
    assert (MODELS_DIR / "imagenet_mobilenet_v2.int8.onnx").stat().st_size <= 4.5e6


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("chelsea-cat.png", {"Egyptian cat", "tabby", "tiger cat"}),
        # The same photo as an iPhone writes it: HEVC, stored sideways, rotated by metadata.
        ("chelsea-cat-portrait.heic", {"Egyptian cat", "tabby", "tiger cat"}),
        ("coffee.jpg", {"espresso", "cup", "coffee mug"}),
    ],
)
def test_imagenet_model_recognises_the_samples(sample: str, expected: set[str]) -> None:
    model = ModelRegistry().get("imagenet_mobilenet_v2")
    result = classify_file(str(SAMPLES / sample), model, top_k=5, limits=Limits())
    assert result.labels[0]["label"] in expected
