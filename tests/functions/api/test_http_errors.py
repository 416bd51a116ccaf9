"""The one mapping from failures to callable codes, HTTP statuses and the JSON error body."""

from __future__ import annotations

import pytest
from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

from media_classifier.api.http_errors import (
    ALL_CODES,
    INTERNAL_MESSAGE,
    ApiError,
    RequestCode,
    from_exception,
    is_unexpected,
)
from media_classifier.errors import (
    DOCUMENT_ONLY,
    MAX_MESSAGE_CHARS,
    MAX_SHOWN_CHARS,
    ErrorCode,
    MediaError,
    bounded,
    shown,
    shown_names,
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
        (RequestCode.NO_EMBEDDINGS, "failed-precondition", 409),
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


# --- bounded messages -----------------------------------------------------------------------


def test_messages_are_capped_at_the_source() -> None:
    """A message built from client input can never grow a reply (or a log line) unbounded."""
    huge = "x" * 2_000_000
    for error in (ApiError(RequestCode.INVALID_ARGUMENT, huge), MediaError(ErrorCode.EMPTY, huge)):
        assert len(error.message) <= MAX_MESSAGE_CHARS
        assert error.message.endswith("more characters)")
        assert f"{2_000_000 - (MAX_MESSAGE_CHARS - 40):,}" in error.message
    assert bounded("short") == "short"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cat", "'cat'"),
        ("a\x00b\ud800", "'a\\x00b\\ud800'"),
        (3, "3"),
        ([1] * 10_000, "<list of 10,000 items>"),
        ({"a": 1}, "<dict of 1 items>"),
    ],
)
def test_shown_quotes_client_values_escaped_and_short(value: object, expected: str) -> None:
    assert shown(value) == expected


def test_shown_cuts_long_values_and_nested_ones_cost_nothing() -> None:
    assert len(shown("y" * 10_000_000)) == MAX_SHOWN_CHARS
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert shown(deep) == "<list of 1 items>"  # repr() would recurse 100,000 deep


def test_shown_names_lists_a_few_then_counts() -> None:
    names = [f"key{i}" for i in range(200_000)]
    text = shown_names(names)
    assert text == "'key0', 'key1', 'key2', 'key3', 'key4' and 199,995 more"
    assert shown_names(["a", "b"]) == "'a', 'b'"
