"""One mapping from failures to what HTTPS clients see: callable codes, HTTP statuses, JSON.

Why one table: the callable ``classify`` and the REST ``api`` report the same failures
(an unsupported file, an unknown model, a missing token), and the Storage trigger writes
the same media codes into result documents. A client should be able to branch on one
stable ``code`` whichever entry point it used, so every code is declared once here with
its callable ``FunctionsErrorCode`` and its HTTP status.

The REST error body has one shape everywhere (see ``functions/openapi.yaml``)::

    {"error": {"code": "UNSUPPORTED_MEDIA", "status": 415, "message": "..."}}

Callable errors carry the same ``code`` in ``details`` (``err.details.code`` in the JS SDK).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

from media_classifier import logs
from media_classifier.errors import DOCUMENT_ONLY, ErrorCode, MediaError, RequestCode, bounded


@dataclass(frozen=True)
class _Mapping:
    callable_code: FunctionsErrorCode
    http_status: int


# Media codes: "unsupported" means the file is of a kind we do not decode (nothing the
# caller can retry), "corrupt" that the bytes are broken (send them again / another file).
_TABLE: dict[str, _Mapping] = {
    ErrorCode.UNSUPPORTED_MEDIA: _Mapping(FunctionsErrorCode.FAILED_PRECONDITION, 415),
    ErrorCode.CORRUPT_MEDIA: _Mapping(FunctionsErrorCode.INVALID_ARGUMENT, 422),
    ErrorCode.TOO_LARGE: _Mapping(FunctionsErrorCode.RESOURCE_EXHAUSTED, 413),
    ErrorCode.TOO_LONG: _Mapping(FunctionsErrorCode.RESOURCE_EXHAUSTED, 413),
    ErrorCode.EMPTY: _Mapping(FunctionsErrorCode.INVALID_ARGUMENT, 400),
    ErrorCode.TIMEOUT: _Mapping(FunctionsErrorCode.DEADLINE_EXCEEDED, 504),
    ErrorCode.NOT_FOUND: _Mapping(FunctionsErrorCode.NOT_FOUND, 404),
    ErrorCode.UNKNOWN_MODEL: _Mapping(FunctionsErrorCode.INVALID_ARGUMENT, 400),
    ErrorCode.INTERNAL: _Mapping(FunctionsErrorCode.INTERNAL, 500),
    # DOCUMENT_ONLY, mapped all the same: no code may ever crash a reply.
    ErrorCode.INTERRUPTED: _Mapping(FunctionsErrorCode.INTERNAL, 500),
    RequestCode.INVALID_ARGUMENT: _Mapping(FunctionsErrorCode.INVALID_ARGUMENT, 400),
    RequestCode.UNAUTHENTICATED: _Mapping(FunctionsErrorCode.UNAUTHENTICATED, 401),
    RequestCode.PERMISSION_DENIED: _Mapping(FunctionsErrorCode.PERMISSION_DENIED, 403),
    RequestCode.METHOD_NOT_ALLOWED: _Mapping(FunctionsErrorCode.UNIMPLEMENTED, 405),
    # A valid request this model or deployment cannot answer: no retry helps, another
    # model (one with `embeddingDims`) or a deployment with the search switched on would.
    RequestCode.NO_EMBEDDINGS: _Mapping(FunctionsErrorCode.FAILED_PRECONDITION, 409),
}

#: Every code a client may see, for the OpenAPI document and its test.
ALL_CODES: tuple[str, ...] = tuple(str(code) for code in _TABLE if code not in DOCUMENT_ONLY)

#: What an unexpected exception becomes: nothing of the exception reaches the client.
INTERNAL_MESSAGE = "internal error; try again later (the details are in the function logs)"


class ApiError(Exception):
    """A failure to report to an HTTPS client: a stable code and a message a user can act on."""

    def __init__(self, code: str, message: str) -> None:
        if code not in _TABLE:
            raise ValueError(f"unknown error code {code!r}")
        message = bounded(message)
        super().__init__(message)
        self.code = str(code)
        self.message = message

    @property
    def http_status(self) -> int:
        return _TABLE[self.code].http_status

    @property
    def callable_code(self) -> FunctionsErrorCode:
        return _TABLE[self.code].callable_code

    def body(self) -> dict[str, Any]:
        """The REST error body, the one shape every error response has."""
        return {"error": {"code": self.code, "status": self.http_status, "message": self.message}}

    def to_https_error(self) -> HttpsError:
        """The callable error; ``details.code`` carries the same stable code as REST."""
        return HttpsError(self.callable_code, self.message, details={"code": self.code})


def invalid(message: str) -> ApiError:
    """Shorthand for the most common request error."""
    return ApiError(RequestCode.INVALID_ARGUMENT, message)


def from_exception(exc: BaseException) -> ApiError:
    """Map any exception raised while serving a request to what the client is told.

    Media errors keep their code and message (they were written for users); anything
    unexpected becomes ``INTERNAL`` with a fixed message, so no path, stack detail or
    library message leaks. Callers log the original before answering.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, MediaError):
        return ApiError(exc.code, exc.message)
    return ApiError(ErrorCode.INTERNAL, INTERNAL_MESSAGE)


def is_unexpected(exc: BaseException) -> bool:
    """True for exceptions that are bugs or infrastructure failures (logged as errors)."""
    if isinstance(exc, ApiError | MediaError):
        return from_exception(exc).code == ErrorCode.INTERNAL
    return True


def logged(endpoint: str, exc: BaseException) -> ApiError:
    """``from_exception``, after logging the exception as the endpoint's failure.

    Bugs and infrastructure failures are logged with their traceback as errors; the client's
    own mistakes as warnings with the code and message it is told.
    """
    error = from_exception(exc)
    if is_unexpected(exc):
        logs.request_internal_error(endpoint, exc)
    else:
        logs.request_failed(endpoint, error.code, error.message)
    return error
