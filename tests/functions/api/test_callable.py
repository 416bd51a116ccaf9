"""The callable ``classify``: input validation, ownership, and errors as HttpsError."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from firebase_functions.https_fn import (
    AppCheckData,
    AuthData,
    CallableRequest,
    FunctionsErrorCode,
    HttpsError,
)

from media_classifier import config
from media_classifier.api import callable as callable_api
from media_classifier.api.callable import classify_call, decode_base64, handle_call, parse_call
from media_classifier.api.http_errors import INTERNAL_MESSAGE, ApiError, from_exception
from media_classifier.errors import MediaError
from media_classifier.inference import model
from media_classifier.inference.model import ModelRegistry
from tests.functions.https_fixtures import colour_registry, png, settings


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return colour_registry(tmp_path)


def _no_bucket() -> Any:
    raise AssertionError("the bucket must not be touched")


def _call(data: object, uid: str | None = "u1", **kw: Any) -> dict[str, Any]:
    return classify_call(
        data,
        uid,
        settings=kw.get("settings", settings()),
        registry=kw["registry"],
        bucket=kw.get("bucket", _no_bucket),
    )


def _code(call: Any) -> str:
    """The stable code a failure maps to (media errors arrive as MediaError)."""
    with pytest.raises((ApiError, MediaError)) as info:
        call()
    return from_exception(info.value).code


# --- base64 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        lambda b: base64.b64encode(b).decode(),
        lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="),  # URL-safe, unpadded
        lambda b: "data:image/png;base64," + base64.b64encode(b).decode(),  # readAsDataURL
        lambda b: base64.encodebytes(b).decode(),  # wrapped at 76 columns
    ],
)
def test_base64_variants(encode: Any) -> None:
    data = png()
    assert decode_base64(encode(data), settings()) == data


@pytest.mark.parametrize("value", ["not base64!", "abc*", "data:image/png,abc", "A"])
def test_bad_base64_is_invalid_argument(value: str) -> None:
    assert _code(lambda: decode_base64(value, settings())) == "INVALID_ARGUMENT"


@pytest.mark.parametrize("value", [123, b"abc", ["x"], {"b64": "x"}])
def test_image_must_be_a_string(value: object) -> None:
    assert _code(lambda: decode_base64(value, settings())) == "INVALID_ARGUMENT"


def test_oversized_base64_refused_before_decoding() -> None:
    text = "A" * (4 * 1024)  # decodes to 3 KiB
    assert (
        _code(lambda: decode_base64(text, settings(max_request_bytes=3 * 1024 - 1))) == "TOO_LARGE"
    )
    assert len(decode_base64(text, settings(max_request_bytes=3 * 1024))) == 3 * 1024


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None,
        "uploads/u1/a.jpg",
        ["uploads/u1/a.jpg"],
        {},
        {"path": "uploads/u1/a.jpg", "image": "AAAA"},
        {"file": "uploads/u1/a.jpg"},
        {"path": "uploads/u1/a.jpg", "topk": 3},
        {"path": "uploads/u1/a.jpg", "model": 3},
        {"path": "uploads/u1/a.jpg", "topK": 0},
        {"path": "uploads/u1/a.jpg", "topK": 21},
        {"path": "uploads/u1/a.jpg", "topK": "many"},
    ],
)
def test_invalid_calls(data: object) -> None:
    assert _code(lambda: parse_call(data, settings())) == "INVALID_ARGUMENT"


def test_parse_defaults() -> None:
    call = parse_call({"path": "uploads/u1/a.jpg"}, settings(top_k=4))
    assert (call.path, call.image, call.model, call.top_k) == ("uploads/u1/a.jpg", None, None, 4)


# --- the logic ---------------------------------------------------------------------------


def test_signed_out_caller(registry: ModelRegistry) -> None:
    assert _code(lambda: _call({"image": "AAAA"}, None, registry=registry)) == "UNAUTHENTICATED"


def test_image_call(registry: ModelRegistry) -> None:
    data = {"image": base64.b64encode(png((0, 0, 255))).decode(), "topK": 2, "model": "colour"}
    result = _call(data, registry=registry)
    assert result["labels"][0]["label"] == "blue"
    assert len(result["labels"]) == 2
    assert result["kind"] == "image"


def test_unknown_model(registry: ModelRegistry) -> None:
    data = {"image": base64.b64encode(png()).decode(), "model": "imagenet_resnet9000"}
    assert _code(lambda: _call(data, registry=registry)) == "UNKNOWN_MODEL"


def test_another_users_object_is_denied_without_storage(registry: ModelRegistry) -> None:
    """Denied before the bucket is asked: the answer must not reveal whether it exists."""
    assert (
        _code(lambda: _call({"path": "uploads/u2/cat.jpg"}, registry=registry))
        == "PERMISSION_DENIED"
    )


def test_path_call_uses_the_folder_route(registry: ModelRegistry, tmp_path: Path) -> None:
    routed = settings(default_model="missing", routes={"colours": "colour"})
    asked: list[str] = []

    class Bucket:
        def get_blob(self, name: str) -> None:
            asked.append(name)
            return None

    call = lambda: _call(  # noqa: E731
        {"path": "uploads/u1/colours/x.png"}, registry=registry, settings=routed, bucket=Bucket
    )
    assert _code(call) == "NOT_FOUND"  # routed to "colour" (exists), then looked up
    assert asked == ["uploads/u1/colours/x.png"]


# --- the SDK adapter ---------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry) -> None:
    """``handle_call`` reads params and the per-instance registry: both at the colour model."""
    monkeypatch.setattr(model, "_default_registry", registry)
    monkeypatch.setenv("DEFAULT_MODEL", "colour")


def _request(data: object, uid: str | None = "u1", app: bool = False) -> CallableRequest:
    return CallableRequest(
        data=data,
        raw_request=None,  # type: ignore[arg-type]
        auth=AuthData(uid, {"uid": uid}) if uid else None,
        app=AppCheckData("app-1", {}) if app else None,
    )


def _handle(request: CallableRequest, *, enforce_app_check: bool) -> dict[str, Any]:
    """The adapter as ``main.classify`` calls it: with the settings the params give."""
    return handle_call(
        request, settings=config.request_settings(), enforce_app_check=enforce_app_check
    )


def _https_error(call: Any) -> HttpsError:
    with pytest.raises(HttpsError) as info:
        call()
    return info.value


@pytest.mark.usefixtures("served")
def test_handle_success() -> None:
    result = _handle(_request({"image": base64.b64encode(png()).decode()}), enforce_app_check=False)
    assert result["labels"][0]["label"] == "red"
    assert result["model"]["id"] == "colour"


@pytest.mark.usefixtures("served")
def test_handle_maps_errors_to_https_errors() -> None:
    error = _https_error(lambda: _handle(_request({"image": "%%%"}), enforce_app_check=False))
    assert error.code == FunctionsErrorCode.INVALID_ARGUMENT
    assert error.details == {"code": "INVALID_ARGUMENT"}
    error = _https_error(
        lambda: _handle(_request({"image": "AAAA"}, uid=None), enforce_app_check=False)
    )
    assert error.code == FunctionsErrorCode.UNAUTHENTICATED
    text = base64.b64encode(b"plain text, not a picture").decode()
    error = _https_error(lambda: _handle(_request({"image": text}), enforce_app_check=False))
    assert error.code == FunctionsErrorCode.FAILED_PRECONDITION
    assert error.details == {"code": "UNSUPPORTED_MEDIA"}


@pytest.mark.usefixtures("served")
def test_app_check_switch() -> None:
    data = {"image": base64.b64encode(png()).decode()}
    error = _https_error(lambda: _handle(_request(data), enforce_app_check=True))
    assert error.code == FunctionsErrorCode.UNAUTHENTICATED
    assert "App Check" in error.message
    assert _handle(_request(data, app=True), enforce_app_check=True)["kind"] == "image"


@pytest.mark.usefixtures("served")
def test_unexpected_failure_is_internal_and_says_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk /var/secret full")

    monkeypatch.setattr(callable_api, "classify_call", boom)
    error = _https_error(lambda: _handle(_request({"image": "AAAA"}), enforce_app_check=False))
    assert error.code == FunctionsErrorCode.INTERNAL
    assert error.message == INTERNAL_MESSAGE
    assert "secret" not in error.message
    assert "RuntimeError" in capsys.readouterr().err  # the logs keep what the client does not see


def test_unknown_keys_are_named_a_few_then_counted() -> None:
    """200,000 unknown keys once came back all listed: a 1.7 MB error."""
    data = {f"key{i:06d}": 1 for i in range(200_000)} | {"path": "uploads/u1/a.jpg"}
    with pytest.raises(ApiError) as info:
        parse_call(data, settings())
    assert info.value.code == "INVALID_ARGUMENT"
    assert "'key000000'" in info.value.message and "199,995 more" in info.value.message
    assert len(info.value.message) < 300


@pytest.mark.parametrize("value", ["9" * 5_000_000, [[[]]] * 100_000, {"k": "v" * 1_000_000}])
def test_bad_values_are_not_echoed_whole(value: object) -> None:
    with pytest.raises(ApiError) as info:
        parse_call({"path": "uploads/u1/a.jpg", "topK": value}, settings())
    assert len(info.value.message) < 200
