"""Pure decisions of the Storage flow: what is processed, who owns it, which model."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from media_classifier.flows.upload import describe
from media_classifier.store.uploads import (
    Upload,
    custom_metadata,
    owner_of,
    route_model,
    should_process,
)

PREFIX = "uploads/"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("uploads/u1/cat.jpg", True),
        ("uploads/cat.jpg", True),
        ("uploads/", False),
        ("uploads/u1/", False),
        ("results/uploads/u1/cat.jpg", False),
        ("uploadsx/u1/cat.jpg", False),
        ("cat.jpg", False),
    ],
)
def test_should_process(name: str, expected: bool) -> None:
    assert should_process(name, PREFIX) is expected


def test_owner_is_the_segment_after_the_prefix() -> None:
    assert owner_of("uploads/u1/a/b/cat.jpg", PREFIX) == "u1"
    assert owner_of("uploads/cat.jpg", PREFIX) is None


def test_route_model_by_folder() -> None:
    routes = {"fashion": "fashion_model"}
    assert route_model("uploads/u1/fashion/shirt.png", PREFIX, routes, "default") == "fashion_model"
    assert route_model("uploads/u1/fashion.png", PREFIX, routes, "default") == "default"
    assert route_model("uploads/u1/other/x.png", PREFIX, routes, "default") == "default"


def test_custom_metadata_keeps_string_pairs_and_never_the_download_token() -> None:
    raw = {
        "postId": "p-42",
        "album": "summer",
        "firebaseStorageDownloadTokens": "SECRET",
        "count": 3,
    }
    assert custom_metadata(raw) == (("album", "summer"), ("postId", "p-42"))
    assert custom_metadata(None) == () and custom_metadata("postId=1") == ()


def test_an_upload_carries_its_metadata_into_the_document_fields() -> None:
    @dataclass
    class Obj:
        name: str = "uploads/u1/x.jpg"
        generation: str = "5"
        size: str = "10"
        content_type: str = "image/jpeg"
        metadata: dict | None = None

    upload = Upload.of("b", Obj(metadata={"postId": "p-1", "firebaseStorageDownloadTokens": "t"}))
    assert describe(upload, "uploads/")["customMetadata"] == {"postId": "p-1"}
    assert describe(Upload.of("b", Obj()), "uploads/")["customMetadata"] == {}
