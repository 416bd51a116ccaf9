"""The callable's raw HTTP request, checked before the firebase-functions SDK parses it.

Why a guard in front of the SDK: firebase-functions 0.6.0 (``https_fn._on_call_handler``)
parses the body inside its own ``try`` and turns every exception it did not foresee
into ``500 INTERNAL``, before this project's code runs. Clients got a 500, which the
README reserves for bugs, for their own mistakes: a body that is not JSON (Werkzeug's
``BadRequest``), JSON nested 50,000 deep (``RecursionError``), a top-level JSON value
that is not an object (``"data" in 5`` raises ``TypeError``). The SDK also verifies the
ID token without ``check_revoked``, so the token of a disabled, deleted or signed-out
user kept working for up to an hour.

``main.py`` wraps the SDK's handler with :func:`screen`. It refuses such requests in
the callable protocol's own shape (``{"error": {"status", "message", "details"}}``,
the HTTP status the SDK gives that status, CORS headers as the SDK sets them), and
otherwise hands the request on untouched, its body already read and cached, so the
SDK parses exactly the bytes that were checked here. A request that passes the guard
is one the SDK parses without failing: a JSON object ``{"data": ...}`` at most
:data:`MAX_JSON_DEPTH` deep. The shape of ``data`` itself is checked by
:func:`api.callable.parse_call`, after the SDK, with the same error shape.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from media_classifier.api.http_errors import ApiError, RequestCode, invalid, logged
from media_classifier.api.on_demand import RequestSettings
from media_classifier.errors import ErrorCode

if TYPE_CHECKING:
    import flask

ENDPOINT = "classify"
#: Deepest JSON a call may be: ``{"data": {"image": "..."}}`` is 2 deep. Far below the
#: depth at which Python's JSON parser raises RecursionError (the SDK parses it again).
MAX_JSON_DEPTH = 32
#: Room for the JSON around the base64 media.
BODY_OVERHEAD = 64 * 1024
#: What ``httpsCallable`` sends and the SDK requires.
CONTENT_TYPE = "application/json"
PROTOCOL_HINT = 'POST a JSON body {"data": {...}} with Content-Type: application/json'

TokenVerifier = Callable[[str], str]


def body_limit(settings: RequestSettings) -> int:
    """The largest body accepted: media at the HTTPS cap as base64, line-wrapped, in JSON.

    Base64 is 4/3 of the bytes; encoders that wrap lines (``encodebytes``: a newline,
    escaped to two characters in JSON, every 76) add 3 % more: 1.5x leaves room for both.
    """
    return settings.request_limits().max_bytes * 3 // 2 + BODY_OVERHEAD


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if containers nest more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def bearer_token(authorization: str) -> str:
    """The token the SDK will verify, taken from the header exactly as the SDK takes it."""
    if not authorization.startswith("Bearer "):
        raise ApiError(
            RequestCode.UNAUTHENTICATED,
            "send Authorization: Bearer <Firebase ID token> (the Firebase SDKs do this)",
        )
    return authorization.replace("Bearer ", "")


def read_body(request: flask.Request, settings: RequestSettings) -> bytes:
    """The body, read at most up to :func:`body_limit` and cached for the SDK."""
    from werkzeug.exceptions import RequestEntityTooLarge

    limit = body_limit(settings)
    too_large = ApiError(
        ErrorCode.TOO_LARGE,
        f"the request body is larger than {limit:,} bytes; the callable accepts media of up"
        f" to {settings.request_limits().max_bytes:,} bytes (base64-encoded). Upload larger"
        f" files to Storage under {settings.prefix}<uid>/ and classify them by path.",
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    # Werkzeug stops reading a chunked body (no Content-Length) at this maximum, without
    # an error when the body reaches it exactly: one byte more tells "too large" apart.
    # (Flask < 3.1 has no per-request limit; its chunked bodies are then read whole, up
    # to the platform's 32 MB, and refused below.)
    with contextlib.suppress(AttributeError):
        request.max_content_length = limit + 1
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise too_large from None
    if len(body) > limit:
        raise too_large
    return body


def parse_body(body: bytes) -> Any:
    """The JSON document of a call, or INVALID_ARGUMENT saying what is wrong with it."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise invalid(f"the JSON body nests too deeply; {PROTOCOL_HINT}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise invalid(f"the body is not valid JSON ({reason}); {PROTOCOL_HINT}") from None
    if too_deep(document):
        raise invalid(
            f"the JSON body nests more than {MAX_JSON_DEPTH} levels deep; {PROTOCOL_HINT}"
        )
    if not isinstance(document, dict) or set(document) != {"data"}:
        raise invalid(f'the body must be a JSON object with one key, "data"; {PROTOCOL_HINT}')
    return document


def check_request(
    request: flask.Request, *, settings: RequestSettings, verify_token: TokenVerifier
) -> None:
    """Raise :class:`ApiError` for any request the SDK would fail on or should refuse.

    Order: what the headers alone tell (method, content type, declared size), then the
    token (a signed-out or revoked caller never costs the body's upload), then the body.
    """
    if request.method != "POST":
        raise invalid(f"the callable takes POST, not {request.method[:20]}; {PROTOCOL_HINT}")
    if request.mimetype != CONTENT_TYPE:
        raise invalid(
            f"Content-Type must be {CONTENT_TYPE}, not {request.mimetype[:60]!r}; {PROTOCOL_HINT}"
        )
    if request.content_length is not None and request.content_length > body_limit(settings):
        read_body(request, settings)  # raises TOO_LARGE without reading anything
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        verify_token(bearer_token(authorization))
    parse_body(read_body(request, settings))


def refusal(error: ApiError) -> flask.Response:
    """The callable protocol's error response for ``error``, as the SDK would send it.

    The body and status come from the SDK's own ``HttpsError`` (its private
    ``_as_dict`` and status table, so they match the SDK's wire format exactly; the
    unit tests compare them with a refusal by the SDK itself), and the CORS headers from
    the same ``flask_cors`` decorator the SDK puts around callables.
    """
    import flask
    from flask_cors import cross_origin

    wire = error.to_https_error()
    body = json.dumps({"error": wire._as_dict()})
    status = wire._http_error_code.status

    @cross_origin(methods="POST", origins="*")
    def respond() -> flask.Response:
        return flask.Response(body, status=status, mimetype="application/json")

    return respond()


def screen(
    request: flask.Request, *, settings: RequestSettings, verify_token: TokenVerifier
) -> flask.Response | None:
    """A refusal for a request the SDK must not see, or None to let the SDK handle it.

    Preflight ``OPTIONS`` requests go to the SDK (its CORS handling answers them).
    Never raises: an unexpected failure here is answered as ``INTERNAL`` and logged.
    """
    if request.method == "OPTIONS":
        return None
    try:
        check_request(request, settings=settings, verify_token=verify_token)
    except Exception as exc:
        error = logged(ENDPOINT, exc)
        return refusal(error)
    return None
