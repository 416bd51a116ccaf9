"""The shared bytes-to-labels path, with a model whose answers are known."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Limits, classify_bytes, classify_file
from tests.functions.conftest import encode


@pytest.fixture
def model(colour_model_path: Path) -> Model:
    return Model.load(colour_model_path, threads=1)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_image_bytes_to_labels(model: Model, fmt: str) -> None:
    data = encode(Image.new("RGB", (300, 200), (0, 0, 255)), fmt)
    result = classify_bytes(data, model, top_k=2, limits=Limits())
    assert result.kind == "image"
    assert result.labels[0]["label"] == "blue"
    assert len(result.labels) == 2
    assert result.model == {"id": "colour", "name": "colour-test", "version": "1", "sha": model.sha}
    assert {"decode", "inference", "total"} <= set(result.timings)


def test_file_and_bytes_agree(model: Model, tmp_path: Path) -> None:
    data = encode(Image.new("RGB", (64, 64), (0, 200, 0)), "PNG")
    path = tmp_path / "green.bin"  # no extension: the bytes decide
    path.write_bytes(data)
    by_file = classify_file(str(path), model, top_k=3, limits=Limits())
    by_bytes = classify_bytes(data, model, top_k=3, limits=Limits())
    assert by_file.labels == by_bytes.labels
    assert by_file.content_type == "image/png"


def test_byte_limit(model: Model) -> None:
    data = encode(Image.new("RGB", (64, 64)), "PNG")
    with pytest.raises(MediaError) as info:
        classify_bytes(data, model, top_k=1, limits=Limits(max_bytes=len(data) - 1))
    assert info.value.code == ErrorCode.TOO_LARGE


def test_text_is_unsupported(model: Model) -> None:
    with pytest.raises(MediaError) as info:
        classify_bytes(b"just some text\n", model, top_k=1, limits=Limits())
    assert info.value.code == ErrorCode.UNSUPPORTED_MEDIA


def test_long_video_is_spread_over_max_frames(model: Model, tmp_path: Path) -> None:
    from tests import media_factory

    path = media_factory.testsrc_video(tmp_path / "ten.mp4", duration=10, size=(160, 90), fps=10)
    result = classify_file(str(path), model, top_k=2, limits=Limits(max_frames=4))
    assert result.kind == "video"
    assert [f["t"] for f in result.frames] == [0.0, 2.5, 5.0, 7.5]
    assert result.video["framesAnalyzed"] == 4
    assert result.video["segments"][-1]["endSec"] == 10.0
    assert result.video["segments"][0]["startSec"] == 0.0


def test_frames_run_on_the_quiet_session_and_pictures_on_the_main_one(
    model: Model, tmp_path: Path
) -> None:
    from tests import media_factory

    classify_bytes(encode(Image.new("RGB", (64, 64)), "PNG"), model, top_k=1, limits=Limits())
    assert model._for_frames is None  # a picture never makes the second session
    path = media_factory.testsrc_video(tmp_path / "two.mp4", duration=2, size=(160, 90), fps=10)
    classify_file(str(path), model, top_k=1, limits=Limits())
    assert model._for_frames is not None


def test_video_over_the_duration_limit_is_too_long(model: Model, tmp_path: Path) -> None:
    from tests import media_factory

    path = media_factory.testsrc_video(tmp_path / "three.webm", duration=3, size=(64, 64))
    with pytest.raises(MediaError) as info:
        classify_file(str(path), model, top_k=1, limits=Limits(max_video_seconds=2))
    assert info.value.code == ErrorCode.TOO_LONG


def test_animation_with_too_many_frames_is_refused_before_decoding(
    model: Model, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from media_classifier.inference import pipeline
    from tests import media_factory

    monkeypatch.setattr(pipeline, "MAX_ANIMATION_FRAMES", 10)
    path = media_factory.animated_gif(tmp_path / "many.gif", [100] * 11)
    with pytest.raises(MediaError) as info:
        classify_bytes(path.read_bytes(), model, top_k=1, limits=Limits())
    assert info.value.code == ErrorCode.TOO_LONG
    assert "11 frames" in info.value.message
