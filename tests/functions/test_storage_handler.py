"""Pure decisions of the Storage flow: what is processed, who owns it, which model."""

from __future__ import annotations

import pytest

from media_classifier.storage_handler import owner_of, route_model, should_process

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
