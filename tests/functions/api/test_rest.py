"""The REST ``api`` without a server: routing, auth, body styles, errors, the OpenAPI contract.

Every response :func:`handle` produces here is also validated against
``functions/openapi.yaml``, so the document and the code cannot drift apart silently.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import flask
import jsonschema_rs
import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from urllib3.filepost import encode_multipart_formdata

from media_classifier import config
from media_classifier.api.http_errors import ALL_CODES, INTERNAL_MESSAGE, ApiError, RequestCode
from media_classifier.api.rest import (
    ROUTES,
    ApiRequest,
    ApiResponse,
    bearer_token,
    classify_request,
    handle_request,
    multipart_parts,
    read_at_most,
    route_of,
    serve,
)
from media_classifier.inference import model
from media_classifier.inference.model import ModelRegistry
from tests.functions.https_fixtures import LocalBucket, colour_registry, png, settings

OPENAPI = Path(__file__).resolve().parents[3] / "functions" / "openapi.yaml"
TOKENS = {"token-u1": "u1"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text())


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return colour_registry(tmp_path)


def verify(token: str) -> str:
    """Stands in for firebase_admin.auth: one known token."""
    if token not in TOKENS:
        raise ApiError(RequestCode.UNAUTHENTICATED, "invalid token")
    return TOKENS[token]


def request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    content_type: str | None = None,
    token: str | None = "token-u1",
    query: dict[str, str] | None = None,
) -> ApiRequest:
    headers = {}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if content_type is not None:
        headers["content-type"] = content_type
    return ApiRequest(method, path, headers, query or {}, len(body), lambda limit: body)


def call(req: ApiRequest, registry: ModelRegistry, spec: dict[str, Any], **kw: Any) -> ApiResponse:
    """``handle`` plus a check of the response against the OpenAPI document."""
    reply = handle_request(
        req,
        verify_token=verify,
        settings=kw.get("settings", settings()),
        registry=registry,
        bucket=kw.get("bucket", _no_bucket),
    )
    conforms(spec, route_of(req.path), req.method.lower(), reply)
    json.dumps(reply.body)  # serializable as sent
    return reply


def _no_bucket() -> Any:
    raise AssertionError("only ?path= requests may create a Storage client")


def conforms(spec: dict[str, Any], route: str, method: str, reply: ApiResponse) -> None:
    """Assert the reply is one the document describes for this operation (or the error shape)."""
    operation = spec["paths"].get(route, {}).get(method)
    if operation is None:  # unknown route or method: still the one error shape
        schema_ref = "#/components/schemas/Error"
    else:
        response = operation["responses"][str(reply.status)]
        if "$ref" in response:
            response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        schema_ref = response["content"]["application/json"]["schema"]["$ref"]
        for name, header in response.get("headers", {}).items():
            if header.get("required"):
                assert name in reply.headers
    root = {"$ref": schema_ref, "components": spec["components"]}
    jsonschema_rs.validator_for(root).validate(reply.body)
    if reply.status >= 400:
        assert reply.body["error"]["status"] == reply.status


def error_code(reply: ApiResponse) -> str:
    return reply.body["error"]["code"]


# --- the document itself -------------------------------------------------------------------


def test_document_lists_exactly_the_routes(spec: dict[str, Any]) -> None:
    documented = {path: tuple(m.upper() for m in ops) for path, ops in spec["paths"].items()}
    assert documented == ROUTES


def test_document_lists_exactly_the_error_codes(spec: dict[str, Any]) -> None:
    enum = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
    assert sorted(enum["enum"]) == sorted(ALL_CODES)


def test_only_health_is_public(spec: dict[str, Any]) -> None:
    public = {
        p for p, ops in spec["paths"].items() for op in ops.values() if op.get("security") == []
    }
    assert public == {"/v1/health"}


# --- routing and auth ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/models", "/v1/models"),
        ("/v1/models/", "/v1/models"),
        ("/api/v1/health", "/v1/health"),
        ("", "/"),
        ("/v2/x", "/v2/x"),
    ],
)
def test_route_of(path: str, route: str) -> None:
    assert route_of(path) == route


@pytest.mark.parametrize("value", [None, "", "Bearer", "Bearer   ", "Basic dXNlcg==", "token"])
def test_bearer_token_required(value: str | None) -> None:
    headers = {} if value is None else {"authorization": value}
    with pytest.raises(ApiError) as info:
        bearer_token(headers)
    assert info.value.code == "UNAUTHENTICATED"


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token({"authorization": "bearer abc.def"}) == "abc.def"


def test_unknown_route_is_json_404(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    reply = call(request("GET", "/v1/nothing", token=None), registry, spec)
    assert reply.status == 404
    assert error_code(reply) == "NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/classify", "POST"),
        ("POST", "/v1/models", "GET"),
        ("DELETE", "/v1/health", "GET"),
        ("PUT", "/v1/classify", "POST"),
    ],
)
def test_wrong_method_is_405_with_allow(
    method: str, path: str, allow: str, registry: ModelRegistry, spec: dict[str, Any]
) -> None:
    reply = call(request(method, path, token=None), registry, spec)
    assert reply.status == 405
    assert reply.headers["Allow"] == allow
    assert error_code(reply) == "METHOD_NOT_ALLOWED"


def test_health_is_public(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    reply = call(request("GET", "/v1/health", token=None), registry, spec)
    assert reply.status == 200
    assert reply.body == {"status": "ok", "models": ["colour"]}


@pytest.mark.parametrize("token", [None, "forged"])
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/models"), ("POST", "/v1/classify")])
def test_protected_routes_need_a_valid_token(
    token: str | None, method: str, path: str, registry: ModelRegistry, spec: dict[str, Any]
) -> None:
    read: list[bool] = []
    req = request(method, path, png(), token=token)
    req = ApiRequest(
        req.method, req.path, req.headers, {}, None, lambda limit: read.append(True) or b""
    )
    reply = call(req, registry, spec)
    assert reply.status == 401
    assert error_code(reply) == "UNAUTHENTICATED"
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert not read  # an anonymous caller cannot make us read (or decode) a body


def test_models(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    reply = call(request("GET", "/v1/models"), registry, spec)
    assert reply.status == 200
    assert reply.body["default"] == "colour"
    (info,) = reply.body["models"]
    assert info["id"] == "colour"
    assert info["labels"] == ["red", "green", "blue"]
    assert info["inputSize"] == {"height": 32, "width": 32}
    assert info["resize"] == "squash"
    assert info["version"] == "1"


# --- classify: body styles -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "application/octet-stream", "image/png", "video/mp4", "text/plain", "application/json"],
)
def test_raw_body_any_content_type(
    content_type: str | None, registry: ModelRegistry, spec: dict[str, Any]
) -> None:
    """The bytes decide the media type, whatever the header claims."""
    reply = call(
        request("POST", "/v1/classify", png((0, 0, 255)), content_type=content_type), registry, spec
    )
    assert reply.status == 200
    assert reply.body["labels"][0]["label"] == "blue"
    assert reply.body["contentType"] == "image/png"


def test_multipart_file(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    body, content_type = encode_multipart_formdata(
        {"note": "ignored", "file": ("g.png", png((0, 255, 0)), "image/png")}
    )
    reply = call(request("POST", "/v1/classify", body, content_type=content_type), registry, spec)
    assert reply.status == 200
    assert reply.body["labels"][0]["label"] == "green"


def test_multipart_part_without_filename_keeps_its_bytes() -> None:
    data = png() + b"\xff\xfe\x00"
    body, content_type = encode_multipart_formdata({"file": data})
    boundary = content_type.split("boundary=")[1].encode()
    assert multipart_parts(body, boundary)["file"] == data


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (encode_multipart_formdata({"other": ("a.png", b"x")})[0], None),  # no "file" part
        (b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc', None),  # truncated
        (b"no multipart here", None),
        (b"", None),
        (png(), "multipart/form-data"),  # no boundary
    ],
)
def test_malformed_multipart_is_400(
    body: bytes, content_type: str | None, registry: ModelRegistry, spec: dict[str, Any]
) -> None:
    if content_type is None:
        boundary = body.split(b"\r\n", 1)[0][2:].decode() if body.startswith(b"--") else "b"
        content_type = f"multipart/form-data; boundary={boundary}"
    reply = call(request("POST", "/v1/classify", body, content_type=content_type), registry, spec)
    assert reply.status == 400
    assert error_code(reply) == "INVALID_ARGUMENT"


# --- classify: options and media errors ----------------------------------------------------


def test_top_k_and_model_from_the_query(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    reply = call(
        request("POST", "/v1/classify", png(), query={"topK": "2", "model": "colour"}),
        registry,
        spec,
    )
    assert reply.status == 200
    assert len(reply.body["labels"]) == 2


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"topK": "0"}, "INVALID_ARGUMENT"),
        ({"topK": "21"}, "INVALID_ARGUMENT"),
        ({"topK": "x"}, "INVALID_ARGUMENT"),
        ({"model": "nope"}, "UNKNOWN_MODEL"),
    ],
)
def test_bad_options_are_400(
    query: dict[str, str], code: str, registry: ModelRegistry, spec: dict[str, Any]
) -> None:
    reply = call(request("POST", "/v1/classify", png(), query=query), registry, spec)
    assert (reply.status, error_code(reply)) == (400, code)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "EMPTY"),
        (b"hello, plain text", 415, "UNSUPPORTED_MEDIA"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415, "UNSUPPORTED_MEDIA"),
        (png()[:60], 422, "CORRUPT_MEDIA"),
    ],
)
def test_media_errors(
    body: bytes, status: int, code: str, registry: ModelRegistry, spec: dict[str, Any]
) -> None:
    reply = call(request("POST", "/v1/classify", body), registry, spec)
    assert (reply.status, error_code(reply)) == (status, code)


def test_declared_oversize_body_is_413_unread(
    registry: ModelRegistry, spec: dict[str, Any]
) -> None:
    read: list[bool] = []
    req = ApiRequest(
        "POST",
        "/v1/classify",
        {"authorization": "Bearer token-u1"},
        {},
        50 * 1024 * 1024,
        lambda limit: read.append(True) or b"",
    )
    reply = call(req, registry, spec)
    assert (reply.status, error_code(reply)) == (413, "TOO_LARGE")
    assert not read


class _Trickle(io.BytesIO):
    """A stream that hands out at most 7 bytes per read, like a slow chunked upload."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))


@pytest.mark.parametrize(("size", "limit", "expected"), [(0, 10, 0), (10, 10, 10), (100, 10, 11)])
def test_read_at_most(size: int, limit: int, expected: int) -> None:
    """An oversized body is read only far enough to know it is too large."""
    assert read_at_most(_Trickle(b"x" * size), limit) == b"x" * expected


def test_media_above_the_request_cap_is_413(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    data = png(size=(300, 300))
    tight = settings(max_request_bytes=len(data) - 1)
    reply = call(request("POST", "/v1/classify", data), registry, spec, settings=tight)
    assert (reply.status, error_code(reply)) == (413, "TOO_LARGE")


def test_pixel_limit_is_413(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    from media_classifier.inference.pipeline import Limits

    tight = settings(limits=Limits(max_pixels=100))
    reply = call(
        request("POST", "/v1/classify", png(size=(20, 20))), registry, spec, settings=tight
    )
    assert (reply.status, error_code(reply)) == (413, "TOO_LARGE")


def test_unexpected_failure_is_500_without_details(
    registry: ModelRegistry, spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError("/srv/secret.onnx: permission denied")

    monkeypatch.setattr("media_classifier.api.rest.classify_media", boom)
    reply = call(request("POST", "/v1/classify", png()), registry, spec)
    assert (reply.status, error_code(reply)) == (500, "INTERNAL")
    assert reply.body["error"]["message"] == INTERNAL_MESSAGE


def test_classify_request_is_pure(registry: ModelRegistry) -> None:
    status, body = classify_request(
        png(), "image/png", {"topK": "1"}, "u1", settings=settings(), registry=registry
    )
    assert status == 200
    assert [label["label"] for label in body["labels"]] == ["red"]


@hyp_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from(
        [
            b"",
            b"\x89PNG\r\n\x1a\n",
            b"\xff\xd8\xff",
            b"GIF89a",
            b"RIFF\0\0\0\0WEBP",
            b"BM",
            b"II*\x00",
            b"\x00\x00\x00\x18ftypmp42",
            b"\x1aE\xdf\xa3",
        ]
    ),
    tail=st.binary(max_size=600),
)
def test_arbitrary_bodies_never_5xx(
    prefix: bytes, tail: bytes, registry: ModelRegistry, spec: dict[str, Any]
) -> None:
    reply = call(request("POST", "/v1/classify", prefix + tail), registry, spec)
    assert reply.status < 500, reply.body


@hyp_settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), boundary=st.binary(min_size=1, max_size=20))
def test_multipart_parser_fails_only_as_invalid_argument(body: bytes, boundary: bytes) -> None:
    try:
        multipart_parts(body, boundary)
    except ApiError as exc:
        assert exc.code == "INVALID_ARGUMENT"


# --- ?path=: an object the caller uploaded ----------------------------------------------------


def path_request(path: str, body: bytes = b"", **query: str) -> ApiRequest:
    return request("POST", "/v1/classify", body, query={"path": path, **query})


def test_own_object_by_path(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    bucket = LocalBucket({"uploads/u1/blue.png": png((0, 0, 255))})
    reply = call(
        path_request("uploads/u1/blue.png", topK="1"), registry, spec, bucket=lambda: bucket
    )
    assert reply.status == 200, reply.body
    assert reply.body["path"] == "uploads/u1/blue.png"
    assert reply.body["labels"] == [{"label": "blue", "score": pytest.approx(1.0, abs=0.05)}]
    assert "download" in reply.body["timings"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("uploads/u1/../u2/private.png", 400, "INVALID_ARGUMENT"),
        ("uploads/u1/../../admin/x.png", 400, "INVALID_ARGUMENT"),
        ("uploads/u1/\\..\\u2\\private.png", 400, "INVALID_ARGUMENT"),
        ("uploads/u1/a\x00.png", 400, "INVALID_ARGUMENT"),
        ("uploads/u1//private.png", 400, "INVALID_ARGUMENT"),
        ("", 400, "INVALID_ARGUMENT"),
        ("uploads/u2/private.png", 403, "PERMISSION_DENIED"),
        ("uploads/u1x/private.png", 403, "PERMISSION_DENIED"),
        ("admin/x.png", 403, "PERMISSION_DENIED"),
        ("uploads/u1/%2e%2e/u2/private.png", 404, "NOT_FOUND"),
        ("uploads/u1/missing.png", 404, "NOT_FOUND"),
    ],
)
def test_paths_follow_the_one_rule(
    registry: ModelRegistry, spec: dict[str, Any], path: str, status: int, code: str
) -> None:
    """Refused before Storage is asked (400, 403); only well-formed own paths reach it."""
    bucket = LocalBucket(
        {"uploads/u2/private.png": png((0, 255, 0)), "admin/x.png": png((0, 255, 0))}
    )
    reply = call(path_request(path), registry, spec, bucket=lambda: bucket)
    assert (reply.status, error_code(reply)) == (status, code), reply.body
    assert bucket.asked == ([path] if status == 404 else [])


def test_path_and_body_together_are_invalid(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    reply = call(path_request("uploads/u1/blue.png", png()), registry, spec)
    assert (reply.status, error_code(reply)) == (400, "INVALID_ARGUMENT")
    assert "not both" in reply.body["error"]["message"]


def test_path_needs_a_token_first(registry: ModelRegistry, spec: dict[str, Any]) -> None:
    req = request("POST", "/v1/classify", token=None, query={"path": "uploads/u1/../u2/x"})
    assert error_code(call(req, registry, spec)) == "UNAUTHENTICATED"


# --- the Flask adapter and main.py wiring ---------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry) -> None:
    monkeypatch.setattr(model, "_default_registry", registry)
    monkeypatch.setenv("DEFAULT_MODEL", "colour")


@pytest.mark.usefixtures("served")
def test_serve_adapter() -> None:
    app = flask.Flask("t")
    with app.test_request_context("/v1/health", method="GET"):
        response = serve(flask.request, settings=config.request_settings())
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "ok", "models": ["colour"]}
    with app.test_request_context("/v1/models", method="GET"):
        response = serve(flask.request, settings=config.request_settings())
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "UNAUTHENTICATED"


def test_main_declares_both_https_functions(main_module: Any) -> None:
    assert main_module.classify.__firebase_endpoint__.callableTrigger == {}
    assert main_module.api.__firebase_endpoint__.httpsTrigger == {}


@pytest.mark.usefixtures("served")
def test_cors_preflight_and_headers(main_module: Any) -> None:
    app = flask.Flask("t")
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with app.test_request_context("/v1/classify", method="OPTIONS", headers=preflight):
        response = app.make_response(main_module.api(flask.request))
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://app.example.com")
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    with app.test_request_context("/v1/health", headers={"Origin": "https://app.example.com"}):
        response = app.make_response(main_module.api(flask.request))
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" in response.headers
    assert os.environ["DEFAULT_MODEL"] == "colour"
