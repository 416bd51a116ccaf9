"""The demo's samples: present, small, licensed, and named by the shipped model as expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Limits, classify_file
from tools.demo import DEMO_SAMPLES, OWNER, demo_files, expected_labels, named_as_expected

REPO = Path(__file__).resolve().parents[2]
IMAGENET = REPO / "functions" / "models" / "imagenet_mobilenet_v2.int8.onnx"


@pytest.fixture(scope="module")
def imagenet() -> Model:
    return Model.load(IMAGENET, threads=1)


@pytest.mark.parametrize("name", sorted(DEMO_SAMPLES))
def test_each_demo_sample_is_small_and_has_its_licence_recorded(name: str) -> None:
    path = REPO / "samples" / name
    assert path.stat().st_size < 500_000, "samples stay well under 1 MB each"
    licence = (path.parent / "LICENSE.md").read_text(encoding="utf-8")
    assert f"| `{path.name}` |" in licence, f"{name} has no row in {path.parent.name}/LICENSE.md"


@pytest.mark.parametrize("name", sorted(DEMO_SAMPLES))
def test_the_shipped_model_names_each_demo_sample_as_expected(name: str, imagenet: Model) -> None:
    result = classify_file(str(REPO / "samples" / name), imagenet, top_k=3, limits=Limits())
    top = result.labels[0]
    assert top["label"] in DEMO_SAMPLES[name], f"{name}: {result.labels}"
    assert top["score"] >= 0.5, f"{name}: a demo sample is named with confidence, {top}"


def test_demo_uploads_every_listed_sample_with_a_media_content_type() -> None:
    files = demo_files()
    assert [p.relative_to(REPO / "samples").as_posix() for p, _ in files] == list(DEMO_SAMPLES)
    assert all(ctype.split("/")[0] in {"image", "video"} for _, ctype in files), files


def test_the_demo_table_judges_the_top_label_of_a_demo_sample_only() -> None:
    cat = f"uploads/{OWNER}/images/chelsea-cat.png"
    assert expected_labels(cat) == DEMO_SAMPLES["images/chelsea-cat.png"]
    assert expected_labels(f"uploads/{OWNER}/images/flower.jpg") is None

    def done(label: str) -> dict:
        return {"status": "done", "labels": [{"label": label, "score": 0.9}]}

    assert named_as_expected(cat, done("tabby")) is True
    assert named_as_expected(cat, done("honeycomb")) is False
    assert named_as_expected(cat, {"status": "error", "error": {"code": "X"}}) is None
    assert named_as_expected(f"uploads/{OWNER}/images/flower.jpg", done("honeycomb")) is None
