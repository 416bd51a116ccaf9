"""The one mapping from failures to callable codes, HTTP statuses and the JSON error body."""

from __future__ import annotations

import pytest
from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

from media_classifier.errors import DOCUMENT_ONLY, ErrorCode, MediaError
from media_classifier.http_errors import (
    ALL_CODES,
    INTERNAL_MESSAGE,
    ApiError,
    RequestCode,
    from_exception,
    is_unexpected,
)


@pytest.mark.parametrize("code", list(ErrorCode) + list(RequestCode))
def test_every_code_is_mapped(code: str) -> None:
    """A code added to ErrorCode without a mapping would crash a request: fail here first."""
    error = ApiError(code, "m")
    assert 400 <= error.http_status < 600
    assert isinstance(error.callable_code, FunctionsErrorCode)
    assert (str(code) in ALL_CODES) != (code in DOCUMENT_ONLY)


@pytest.mark.parametrize(
    ("code", "callable_code", "status"),
    [
        (ErrorCode.UNSUPPORTED_MEDIA, "failed-precondition", 415),
        (ErrorCode.CORRUPT_MEDIA, "invalid-argument", 422),
        (ErrorCode.TOO_LARGE, "resource-exhausted", 413),
        (ErrorCode.TOO_LONG, "resource-exhausted", 413),
        (ErrorCode.EMPTY, "invalid-argument", 400),
        (ErrorCode.NOT_FOUND, "not-found", 404),
        (ErrorCode.UNKNOWN_MODEL, "invalid-argument", 400),
        (ErrorCode.INTERNAL, "internal", 500),
        (RequestCode.INVALID_ARGUMENT, "invalid-argument", 400),
        (RequestCode.UNAUTHENTICATED, "unauthenticated", 401),
        (RequestCode.PERMISSION_DENIED, "permission-denied", 403),
        (RequestCode.METHOD_NOT_ALLOWED, "unimplemented", 405),
    ],
)
def test_mapping(code: str, callable_code: str, status: int) -> None:
    error = ApiError(code, "m")
    assert error.callable_code.value == callable_code
    assert error.http_status == status


def test_body_has_one_shape() -> None:
    body = ApiError(ErrorCode.TOO_LARGE, "too big").body()
    assert body == {"error": {"code": "TOO_LARGE", "status": 413, "message": "too big"}}


def test_https_error_carries_the_stable_code() -> None:
    error = ApiError(ErrorCode.CORRUPT_MEDIA, "broken PNG").to_https_error()
    assert isinstance(error, HttpsError)
    assert error.code == FunctionsErrorCode.INVALID_ARGUMENT
    assert error.message == "broken PNG"
    assert error.details == {"code": "CORRUPT_MEDIA"}


def test_unknown_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        ApiError("NOPE", "m")


def test_media_error_keeps_code_and_message() -> None:
    error = from_exception(MediaError(ErrorCode.TOO_LONG, "video lasts 700 s"))
    assert (error.code, error.message, error.http_status) == ("TOO_LONG", "video lasts 700 s", 413)
    assert not is_unexpected(MediaError(ErrorCode.TOO_LONG, "x"))


def test_unexpected_exception_leaks_nothing() -> None:
    exc = RuntimeError("/tmp/secret-path: token abc123")
    error = from_exception(exc)
    assert error.code == "INTERNAL"
    assert error.message == INTERNAL_MESSAGE
    assert "secret" not in str(error.body())
    assert is_unexpected(exc)
    assert is_unexpected(MediaError(ErrorCode.INTERNAL, "x"))
    assert not is_unexpected(ApiError(RequestCode.UNAUTHENTICATED, "x"))
