"""``/v1/similar`` and the callable ``similar``: what is refused before any search runs.

Searches themselves run against Google's Firestore emulator in
``tests/e2e/test_similar_uploads.py``; here the database is one that fails the test if
it is touched, because every refusal must come first.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from media_classifier.api.callable import similar_call
from media_classifier.api.http_errors import ApiError
from media_classifier.api.rest import ApiRequest, handle_request
from media_classifier.api.similar import DEFAULT_K, MAX_K, parse_k
from media_classifier.inference.model import ModelRegistry
from tests.functions.https_fixtures import png, settings
from tests.model_factory import colour_model

SEARCHABLE = settings(embeddings="mediaEmbeddings")


def _untouchable() -> Any:
    raise AssertionError("the database was touched")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    colour_model(tmp_path / "colour.onnx", embedding=True)
    colour_model(tmp_path / "plain.onnx")
    return ModelRegistry(tmp_path)


def _call(data: object, registry: ModelRegistry, uid: str | None = "u1", **kw: Any) -> Any:
    return similar_call(
        data,
        uid,
        settings=kw.get("settings", SEARCHABLE),
        registry=registry,
        bucket=_untouchable,
        db=_untouchable,
    )


def _code(call: Any) -> str:
    with pytest.raises(ApiError) as info:
        call()
    return str(info.value.code)


@pytest.mark.parametrize(("value", "k"), [(None, DEFAULT_K), ("", DEFAULT_K), (1, 1), ("50", 50)])
def test_k_defaults_to_ten_and_accepts_one_to_fifty(value: object, k: int) -> None:
    assert parse_k(value) == k


@pytest.mark.parametrize("value", [0, MAX_K + 1, -1, 2.5, True, "3 ", "ten", [3]])
def test_k_out_of_range_or_of_another_type_is_refused(value: object) -> None:
    assert _code(lambda: parse_k(value)) == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    "data",
    [
        None,
        "uploads/u1/a.jpg",
        {},
        {"path": "uploads/u1/a.jpg", "image": "AAAA"},
        {"path": "uploads/u1/a.jpg", "topK": 3},
        {"path": "uploads/u1/a.jpg", "k": 0},
        {"path": "uploads/u1/a.jpg", "model": 3},
        {"path": "uploads/u1/../u2/a.jpg"},
        {"image": "%%%"},
    ],
)
def test_malformed_calls_are_refused_before_anything_is_read(
    data: object, registry: ModelRegistry
) -> None:
    assert _code(lambda: _call(data, registry)) == "INVALID_ARGUMENT"


def test_signed_out_callers_and_other_users_folders_are_refused(registry: ModelRegistry) -> None:
    assert _code(lambda: _call({"path": "uploads/u1/a.jpg"}, registry, uid=None)) == (
        "UNAUTHENTICATED"
    )
    other = {"path": "uploads/u2/a.jpg"}
    assert _code(lambda: _call(other, registry)) == "PERMISSION_DENIED"


def test_a_model_without_vectors_cannot_search(registry: ModelRegistry) -> None:
    image = base64.b64encode(png()).decode()
    call = {"image": image, "model": "plain"}
    assert _code(lambda: _call(call, registry)) == "NO_EMBEDDINGS"
    assert _code(lambda: _call({"path": "uploads/u1/a.jpg", "model": "plain"}, registry)) == (
        "NO_EMBEDDINGS"
    )


def test_a_deployment_without_a_vector_collection_cannot_search(registry: ModelRegistry) -> None:
    call = {"image": base64.b64encode(png()).decode(), "model": "colour"}
    assert _code(lambda: _call(call, registry, settings=settings())) == "NO_EMBEDDINGS"


def test_the_rest_route_needs_a_token_and_a_valid_k(registry: ModelRegistry) -> None:
    def verify(token: str) -> str:
        if token != "good":
            raise ApiError("UNAUTHENTICATED", "bad token")
        return "u1"

    def post(headers: dict[str, str], query: dict[str, str]) -> Any:
        request = ApiRequest("POST", "/v1/similar", headers=headers, query=query)
        return handle_request(
            request,
            verify_token=verify,
            settings=SEARCHABLE,
            registry=registry,
            bucket=_untouchable,
            db=_untouchable,
        )

    assert post({}, {"path": "uploads/u1/a.jpg"}).status == 401
    reply = post({"authorization": "Bearer good"}, {"path": "uploads/u1/a.jpg", "k": "99"})
    assert (reply.status, reply.body["error"]["code"]) == (400, "INVALID_ARGUMENT")
    reply = post({"authorization": "Bearer good"}, {"path": "uploads/u2/a.jpg"})
    assert (reply.status, reply.body["error"]["code"]) == (403, "PERMISSION_DENIED")
