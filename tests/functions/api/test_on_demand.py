"""Option parsing, ownership and size rules shared by the callable and the REST API."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from media_classifier.api.http_errors import ApiError
from media_classifier.api.on_demand import (
    check_object_path,
    classify_media,
    classify_stored,
    parse_top_k,
    resolve_model,
)
from media_classifier.errors import ErrorCode, MediaError
from media_classifier.inference.model import ModelRegistry
from media_classifier.inference.pipeline import Limits
from tests.functions.https_fixtures import colour_registry, png, settings


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return colour_registry(tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 5), ("", 5), (1, 1), (20, 20), ("7", 7), ("07", 7), (3.0, 3)],
)
def test_top_k_accepted(value: object, expected: int) -> None:
    assert parse_top_k(value, 5) == expected


@pytest.mark.parametrize(
    "value", [0, 21, -1, True, False, 2.5, "abc", " 3", "-1", "1e3", "3.0", [], {}, "9" * 40]
)
def test_top_k_rejected(value: object) -> None:
    with pytest.raises(ApiError) as info:
        parse_top_k(value, 5)
    assert info.value.code == "INVALID_ARGUMENT"
    assert "1 to 20" in info.value.message


def test_model_default_and_named(registry: ModelRegistry) -> None:
    assert resolve_model(None, "colour", registry).key == "colour"
    assert resolve_model("colour", "other", registry).key == "colour"


def test_unknown_model_lists_the_served_ones(registry: ModelRegistry) -> None:
    with pytest.raises(ApiError) as info:
        resolve_model("nope", "colour", registry)
    assert info.value.code == "UNKNOWN_MODEL"
    assert info.value.http_status == 400
    assert "available: colour" in info.value.message


def test_model_must_be_a_string(registry: ModelRegistry) -> None:
    with pytest.raises(ApiError) as info:
        resolve_model(["colour"], "colour", registry)
    assert info.value.code == "INVALID_ARGUMENT"


def test_own_object_passes() -> None:
    assert check_object_path("uploads/u1/a b/c.jpg", "u1", "uploads/") == "uploads/u1/a b/c.jpg"


@pytest.mark.parametrize(
    "path",
    [
        "uploads/u2/cat.jpg",  # another user's
        "uploads/u1x/cat.jpg",  # a uid that merely starts with ours
        "uploads/cat.jpg",  # directly under the prefix: nobody's
        "other/u1/cat.jpg",  # outside the watched prefix
        "uploads/u1",  # the user's folder itself, no object in it
    ],
)
def test_other_objects_are_denied(path: str) -> None:
    with pytest.raises(ApiError) as info:
        check_object_path(path, "u1", "uploads/")
    assert info.value.code == "PERMISSION_DENIED"
    assert "uploads/u1/" in info.value.message


@pytest.mark.parametrize(
    "path",
    ["", None, 3, "gs://bucket/uploads/u1/a.jpg", "x" * 1025, "uploads/u1/", "uploads/u1/../u2/a"],
)
def test_malformed_paths_are_invalid(path: object) -> None:
    with pytest.raises(ApiError) as info:
        check_object_path(path, "u1", "uploads/")
    assert info.value.code == "INVALID_ARGUMENT"


def test_classify_media_returns_document_fields(registry: ModelRegistry) -> None:
    result = classify_media(png((0, 255, 0)), registry.get("colour"), 2, settings())
    assert set(result) == {"kind", "contentType", "labels", "model", "timings", "video"}
    assert result["kind"] == "image"
    assert result["contentType"] == "image/png"
    assert [label["label"] for label in result["labels"]][:1] == ["green"]
    assert len(result["labels"]) == 2
    sha = registry.get("colour").sha
    assert result["model"] == {"id": "colour", "name": "colour-test", "version": "1", "sha": sha}
    assert result["video"] is None


def test_request_cap_is_below_the_object_limit(registry: ModelRegistry) -> None:
    data = png()
    small = settings(max_request_bytes=len(data) - 1, limits=Limits(max_bytes=10**9))
    with pytest.raises(ApiError) as info:
        classify_media(data, registry.get("colour"), 1, small)
    assert info.value.code == "TOO_LARGE"
    assert "Upload larger files to Storage" in info.value.message


def test_empty_media(registry: ModelRegistry) -> None:
    with pytest.raises(MediaError) as info:
        classify_media(b"", registry.get("colour"), 1, settings())
    assert info.value.code == ErrorCode.EMPTY


class _Blob:
    """Just enough of google.cloud.storage.Blob: size metadata and a download."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.size = source.stat().st_size
        self.downloads = 0

    def download_to_filename(self, filename: str) -> None:
        self.downloads += 1
        shutil.copyfile(self.source, filename)


class _Bucket:
    def __init__(self, blobs: dict[str, Any]) -> None:
        self.blobs = blobs

    def get_blob(self, blob_name: str) -> Any:
        return self.blobs.get(blob_name)


def test_classify_object(tmp_path: Path, registry: ModelRegistry) -> None:
    source = tmp_path / "blue.png"
    source.write_bytes(png((0, 0, 255)))
    bucket = _Bucket({"uploads/u1/blue.png": _Blob(source)})
    result = classify_stored("uploads/u1/blue.png", bucket, registry.get("colour"), 1, settings())
    assert result["path"] == "uploads/u1/blue.png"
    assert result["labels"][0]["label"] == "blue"
    assert "download" in result["timings"]


def test_missing_object_is_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(MediaError) as info:
        classify_stored("uploads/u1/gone.png", _Bucket({}), registry.get("colour"), 1, settings())
    assert info.value.code == ErrorCode.NOT_FOUND


def test_object_size_checked_before_download(tmp_path: Path, registry: ModelRegistry) -> None:
    source = tmp_path / "red.png"
    source.write_bytes(png())
    blob = _Blob(source)
    tight = settings(limits=Limits(max_bytes=blob.size - 1))
    with pytest.raises(MediaError) as info:
        classify_stored(
            "uploads/u1/red.png",
            _Bucket({"uploads/u1/red.png": blob}),
            registry.get("colour"),
            1,
            tight,
        )
    assert info.value.code == ErrorCode.TOO_LARGE
    assert blob.downloads == 0
