"""The callable's raw request is screened before the SDK parses it: bad input is 4xx, never 500.

Requests are real Flask requests (Werkzeug's test environment), answered by
``main.classify`` as deployed: the guard, then firebase-functions' own callable handler.
Requests that need a token use :func:`screen` with a stand-in verifier (the real one, with
the Auth emulator, is exercised in ``tests/e2e/test_hostile_requests.py``).
"""

from __future__ import annotations

import io
import json
from typing import Any

import flask
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from media_classifier.api.callable_guard import (
    MAX_JSON_DEPTH,
    body_limit,
    parse_body,
    screen,
    too_deep,
)
from media_classifier.api.http_errors import ApiError, RequestCode
from media_classifier.inference import model
from media_classifier.inference.model import ModelRegistry
from tests.functions.https_fixtures import colour_registry, settings

APP = flask.Flask("guard-tests")
JSON = "application/json"
ORIGIN = "https://app.example.com"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> ModelRegistry:
    registry = colour_registry(tmp_path)
    monkeypatch.setattr(model, "_default_registry", registry)
    monkeypatch.setenv("DEFAULT_MODEL", "colour")
    monkeypatch.setenv("HTTPS_MAX_BYTES", str(64 * 1024))
    return registry


def through_main(main_module: Any, body: bytes | str, **kw: Any) -> flask.Response:
    """One request to ``main.classify`` (guard + SDK), without an Authorization header."""
    kw.setdefault("method", "POST")
    kw.setdefault("content_type", JSON)
    headers = {"Origin": ORIGIN, **kw.pop("headers", {})}
    with APP.test_request_context("/", data=body, headers=headers, **kw):
        return APP.make_response(main_module.classify(flask.request))


def callable_error(response: flask.Response, status: str, http: int, code: str) -> str:
    """The callable protocol's error shape, as the Firebase SDKs read it; returns the message."""
    assert response.status_code == http, response.get_data(as_text=True)[:500]
    assert response.mimetype == JSON
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == status
    assert body["error"]["details"] == {"code": code}
    message = body["error"]["message"]
    assert message and len(message) <= 500
    return message


def nested(depth: int) -> bytes:
    return b'{"data": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.usefixtures("served")
@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not JSON"),
        (b"", "empty"),
        (nested(50_000), "50,000 levels deep (RecursionError in the SDK)"),
        (nested(MAX_JSON_DEPTH + 5), "parseable, but deeper than the limit"),
        (b"5", "a number (the SDK raised TypeError)"),
        (b'"xdatax"', "a string containing 'data' (the SDK raised AttributeError)"),
        (b"[1, 2]", "an array"),
        (b"null", "null"),
        (b"{}", "no data key"),
        (b'{"data": {}, "extra": 1}', "an extra top-level key"),
        (b'{"data": 1, "data2": ' + b"[" * 40 + b"]" * 40 + b"}", "deep beside data"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b'{"data": ' + b"9" * 5000 + b"}", "an integer beyond Python's digit limit"),
        (b'{"data": "\\ud800"} trailing', "trailing garbage"),
    ],
)
def test_malformed_bodies_are_invalid_argument(main_module: Any, body: bytes, why: str) -> None:
    response = through_main(main_module, body)
    callable_error(response, "INVALID_ARGUMENT", 400, "INVALID_ARGUMENT")
    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN), why


@pytest.mark.usefixtures("served")
def test_wrong_method_and_content_type(main_module: Any) -> None:
    response = through_main(main_module, b'{"data": {}}', method="PUT")
    assert "POST" in callable_error(response, "INVALID_ARGUMENT", 400, "INVALID_ARGUMENT")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = through_main(main_module, b'{"data": {}}', content_type=content_type)
        message = callable_error(response, "INVALID_ARGUMENT", 400, "INVALID_ARGUMENT")
        assert "application/json" in message
    with APP.test_request_context("/", method="POST", data=b'{"data": {}}'):  # no Content-Type
        response = APP.make_response(main_module.classify(flask.request))
    callable_error(response, "INVALID_ARGUMENT", 400, "INVALID_ARGUMENT")


@pytest.mark.usefixtures("served")
def test_a_body_over_the_limit_is_too_large_without_being_read(main_module: Any) -> None:
    limit = body_limit(settings(max_request_bytes=64 * 1024))
    body = b'{"data": {"image": "' + b"A" * limit + b'"}}'
    response = through_main(main_module, body)
    message = callable_error(response, "RESOURCE_EXHAUSTED", 429, "TOO_LARGE")
    assert "Storage" in message and f"{64 * 1024:,}" in message


@pytest.mark.usefixtures("served")
def test_a_chunked_body_over_the_limit_is_too_large(main_module: Any) -> None:
    """No Content-Length to refuse up front: the read stops at the limit."""
    limit = body_limit(settings(max_request_bytes=64 * 1024))
    body = b'{"data": {"image": "' + b"A" * (2 * limit) + b'"}}'
    environ = {"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(body)}
    with APP.test_request_context(
        "/", method="POST", content_type=JSON, environ_overrides=environ
    ) as ctx:
        ctx.request.environ.pop("CONTENT_LENGTH", None)
        assert ctx.request.content_length is None
        response = APP.make_response(main_module.classify(flask.request))
    callable_error(response, "RESOURCE_EXHAUSTED", 429, "TOO_LARGE")


@pytest.mark.usefixtures("served")
def test_a_well_formed_call_reaches_the_sdk_and_the_project_code(main_module: Any) -> None:
    """Signed out: the SDK parses the body, then the project's handler says UNAUTHENTICATED."""
    response = through_main(main_module, json.dumps({"data": {"image": "AAAA"}}))
    callable_error(response, "UNAUTHENTICATED", 401, "UNAUTHENTICATED")
    response = through_main(
        main_module, b'{"data": {"image": "AAAA"}}', content_type=f"{JSON}; charset=utf-8"
    )
    callable_error(response, "UNAUTHENTICATED", 401, "UNAUTHENTICATED")


@pytest.mark.usefixtures("served")
def test_preflight_is_left_to_the_sdk(main_module: Any) -> None:
    headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    response = through_main(main_module, b"", method="OPTIONS", headers=headers)
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


@pytest.mark.usefixtures("served")
def test_refusals_have_the_sdks_own_wire_format(main_module: Any) -> None:
    """The guard's refusal and the SDK's refusal of the same request: same keys, status, CORS."""
    sdk_only = main_module.classify.__wrapped__  # the SDK's handler without the guard
    with APP.test_request_context("/", method="PUT", data=b"{}", headers={"Origin": ORIGIN}):
        by_sdk = APP.make_response(sdk_only(flask.request))
    by_guard = through_main(main_module, b"{}", method="PUT")
    assert by_guard.status_code == by_sdk.status_code == 400
    assert by_sdk.get_json()["error"]["status"] == by_guard.get_json()["error"]["status"]
    assert set(by_guard.get_json()["error"]) == {"status", "message", "details"}
    for header in ("Access-Control-Allow-Origin", "Content-Type"):
        assert by_guard.headers[header] == by_sdk.headers[header]


def signed_in_as(uid: str) -> Any:
    def verify(token: str) -> str:
        if token != f"token-of-{uid}":
            raise ApiError(RequestCode.UNAUTHENTICATED, "this user account is disabled")
        return uid

    return verify


def screened(body: bytes, authorization: str | None) -> flask.Response | None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    with APP.test_request_context(
        "/", method="POST", data=body, content_type=JSON, headers=headers
    ):
        refused = screen(flask.request, settings=settings(), verify_token=signed_in_as("u1"))
        return None if refused is None else APP.make_response(refused)


def test_tokens_are_checked_by_the_guard() -> None:
    body = b'{"data": {"image": "AAAA"}}'
    assert screened(body, "Bearer token-of-u1") is None  # passed on to the SDK
    assert screened(body, None) is None  # no token: the handler says UNAUTHENTICATED
    for header in ("Bearer revoked", "Basic dXNlcjpwYXNz", "bearer token-of-u1", ""):
        refused = screened(body, header)
        assert refused is not None, header
        callable_error(refused, "UNAUTHENTICATED", 401, "UNAUTHENTICATED")


def test_the_token_is_checked_before_the_body_is_parsed() -> None:
    refused = screened(b"{not json", "Bearer revoked")
    assert refused is not None
    assert "disabled" in callable_error(refused, "UNAUTHENTICATED", 401, "UNAUTHENTICATED")


def test_an_unexpected_failure_of_the_verifier_is_internal_and_says_nothing() -> None:
    def broken(token: str) -> str:
        raise ConnectionError("auth backend at 10.0.0.1 unreachable")

    with APP.test_request_context(
        "/",
        method="POST",
        data=b'{"data": {}}',
        content_type=JSON,
        headers={"Authorization": "Bearer x"},
    ):
        refused = APP.make_response(screen(flask.request, settings=settings(), verify_token=broken))
    message = callable_error(refused, "INTERNAL", 500, "INTERNAL")
    assert "10.0.0.1" not in message


def test_depth_is_measured_without_recursion() -> None:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    assert too_deep(value)
    assert not too_deep({"data": {"image": "x", "topK": 3}})
    assert not too_deep(5)
    assert too_deep({"a": {"b": [[[]]]}}, limit=4)
    assert not too_deep({"a": {"b": [[]]}}, limit=4)


def test_parse_body_accepts_only_the_protocol_envelope() -> None:
    assert parse_body(b'{"data": {"path": "x"}}') == {"data": {"path": "x"}}
    assert parse_body(b'{"data": null}') == {"data": None}
    with pytest.raises(ApiError) as info:
        parse_body(b'{"data": 1, "data": 2, "x": 3}')
    assert info.value.code == "INVALID_ARGUMENT"


@pytest.mark.usefixtures("served")
@hyp_settings(
    max_examples=150, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(st.text(max_size=8), children, max_size=4)
            ),
            max_leaves=30,
        ).map(lambda value: json.dumps({"data": value}).encode()),
    ),
    content_type=st.sampled_from(
        [JSON, f"{JSON}; charset=utf-8", "text/plain", "application/JSON"]
    ),
)
def test_any_body_is_answered_below_500(main_module: Any, body: bytes, content_type: str) -> None:
    response = through_main(main_module, body, content_type=content_type)
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert set(response.get_json()) in ({"error"}, {"result"})
