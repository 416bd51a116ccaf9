"""The REST function ``api``: classify from any backend with a Firebase ID token.

Routes (``functions/openapi.yaml`` is the contract; keep them in step)::

    POST /v1/classify   raw media body, or multipart/form-data with a part named "file",
                        or no body and ?path=uploads/<uid>/... (an object the caller
                        owns, as the callable's {path}); query: model, topK.
                        Reply: the result document's fields (plus path for objects).
    POST /v1/similar    the same bodies or ?path=; query: k (default 10), model.
                        Reply: {"matches": [{path, score, kind, startSec?, endSec?}],
                        "model": {...}}: the caller's own uploads, nearest first.
    GET  /v1/models     the served models (id, name, version, input size, resize, labels)
    GET  /v1/health     public liveness probe

Every route but health needs ``Authorization: Bearer <Firebase ID token>``. Every error
has the body ``{"error": {"code", "status", "message"}}`` (:mod:`api.http_errors`).

Why plain data in, plain data out: :func:`handle_request` takes an :class:`ApiRequest` and a
token verifier and returns an :class:`ApiResponse`, so routing, auth, parsing and error
mapping are unit-tested without Flask or the Auth service; :func:`serve` is the thin
Flask adapter that ``main.py`` wires to ``https_fn.on_request``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from media_classifier import logs
from media_classifier.api import similar
from media_classifier.api.http_errors import ApiError, RequestCode, invalid, logged
from media_classifier.api.on_demand import (
    Bucket,
    Registry,
    RequestSettings,
    classify_media,
    classify_path,
    parse_top_k,
    resolve_model,
    verify_id_token,
)
from media_classifier.errors import ErrorCode
from media_classifier.inference.model import default_registry
from media_classifier.store.clients import bucket, firestore_client

if TYPE_CHECKING:
    import flask

ENDPOINT = "api"
ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/classify": ("POST",),
    "/v1/similar": ("POST",),
    "/v1/models": ("GET",),
    "/v1/health": ("GET",),
}
PUBLIC_ROUTES = frozenset({"/v1/health"})
#: Room for multipart boundaries and part headers on top of the media size limit.
MULTIPART_OVERHEAD = 64 * 1024
MULTIPART_FILE_FIELD = "file"

TokenVerifier = Callable[[str], str]


@dataclass(frozen=True)
class ApiRequest:
    """The parts of an HTTP request the API reads. ``headers`` keys are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    content_length: int | None = None
    #: Reads the body, at most ``limit + 1`` bytes (enough to tell it is too large).
    read_body: Callable[[int], bytes] = lambda limit: b""


@dataclass(frozen=True)
class ApiResponse:
    """Status, JSON body and extra headers (``Content-Type`` is always JSON)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def route_of(path: str) -> str:
    """The route a request path names.

    The function may be reached as ``/v1/...`` (Cloud Functions / Cloud Run URL, the
    emulator) or as ``/api/v1/...`` (a Hosting rewrite keeps the full path); a trailing
    slash is tolerated.
    """
    route = "/" + path.strip("/")
    if route.startswith("/api/"):
        route = route[len("/api") :]
    return route


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of ``Authorization: Bearer <token>``; raises UNAUTHENTICATED otherwise."""
    value = headers.get("authorization", "")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            RequestCode.UNAUTHENTICATED,
            "send Authorization: Bearer <Firebase ID token> (getIdToken() of a signed-in user)",
        )
    return token.strip()


def extract_media(body: bytes, content_type: str | None) -> bytes:
    """The media of a classify request: the ``file`` part of a multipart body, else the body.

    Any other content type is taken as the raw file: the media type is sniffed from the
    bytes, so a wrong or missing ``Content-Type`` does not matter.
    """
    from werkzeug.http import parse_options_header

    mimetype, options = parse_options_header(content_type or "")
    if mimetype != "multipart/form-data":
        return body
    boundary = options.get("boundary")
    if not boundary:
        raise invalid("multipart/form-data needs a boundary parameter in Content-Type")
    parts = multipart_parts(body, boundary.encode("latin-1", "replace"))
    if MULTIPART_FILE_FIELD not in parts:
        raise invalid(f"the multipart body needs a part named {MULTIPART_FILE_FIELD!r}")
    return parts[MULTIPART_FILE_FIELD]


def multipart_parts(body: bytes, boundary: bytes) -> dict[str, bytes]:
    """Raw bytes of each named part (first occurrence), files and fields alike.

    Werkzeug's sans-IO decoder is used directly so a file sent without ``filename``
    (some clients do) keeps its bytes instead of being decoded as text.
    """
    from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder

    decoder = MultipartDecoder(boundary, max_parts=100)
    parts: dict[str, bytes] = {}
    name: str | None = None
    chunks: list[bytes] = []
    try:
        decoder.receive_data(body)
        decoder.receive_data(None)
        for _ in range(10_000):  # each event consumes input; bounded all the same
            event = decoder.next_event()
            if isinstance(event, Field | File):
                name, chunks = event.name, []
            elif isinstance(event, Data):
                chunks.append(event.data)
                if not event.more_data and name is not None:
                    parts.setdefault(name, b"".join(chunks))
            elif isinstance(event, Epilogue):
                return parts
            elif type(event).__name__ == "NeedData":
                break
    except Exception as exc:  # werkzeug reports malformed input as ValueError and friends
        raise invalid(f"malformed multipart/form-data body ({type(exc).__name__})") from None
    raise invalid("malformed multipart/form-data body (it does not end with the boundary)")


def classify_request(
    body: bytes,
    content_type: str | None,
    query: Mapping[str, str],
    uid: str,
    *,
    settings: RequestSettings,
    registry: Registry,
) -> tuple[int, dict[str, Any]]:
    """``POST /v1/classify`` for an authenticated user: ``(status, JSON body)``.

    Options are validated before the body is parsed, so a wrong ``topK`` is reported
    without decoding anything.
    """
    del uid  # the media travels in the request: nothing to check against the owner
    try:
        top_k = parse_top_k(query.get("topK"), settings.top_k)
        model = resolve_model(query.get("model"), settings.default_model, registry)
        result = classify_media(extract_media(body, content_type), model, top_k, settings)
    except Exception as exc:
        return _error(exc)
    top = result["labels"][0]["label"] if result.get("labels") else None
    logs.request_served(
        f"{ENDPOINT} /v1/classify", model.key, result["kind"], top, result["timings"]
    )
    return 200, result


def body_too_large(size: str, settings: RequestSettings) -> ApiError:
    """413 for a body above the HTTPS cap, pointing at the way that takes large files."""
    return ApiError(
        ErrorCode.TOO_LARGE,
        f"the request body is {size}; HTTPS requests accept up to"
        f" {settings.request_limits().max_bytes:,} bytes of media. Upload larger files to"
        f" Storage under {settings.prefix}<uid>/ instead.",
    )


def _error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    error = logged(ENDPOINT, exc)
    return error.http_status, error.body()


def _reply(status: int, body: dict[str, Any]) -> ApiResponse:
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="media-classifier"'
    return ApiResponse(status, body, headers)


def classify_path_request(
    query: Mapping[str, str],
    uid: str,
    *,
    settings: RequestSettings,
    registry: Registry,
    bucket: Callable[[], Bucket],
) -> tuple[int, dict[str, Any]]:
    """``POST /v1/classify?path=...``: an object the caller uploaded, as the callable's ``{path}``.

    The path rule and the owner check (:func:`api.on_demand.classify_path`) run before
    Storage is touched; the object's own size limit applies, not the request cap.
    """
    try:
        top_k = parse_top_k(query.get("topK"), settings.top_k)
        result = classify_path(
            query["path"],
            uid,
            query.get("model"),
            top_k,
            settings=settings,
            registry=registry,
            bucket=bucket,
        )
    except Exception as exc:
        return _error(exc)
    top = result["labels"][0]["label"] if result.get("labels") else None
    logs.request_served(
        f"{ENDPOINT} /v1/classify", result["model"]["id"], result["kind"], top, result["timings"]
    )
    return 200, result


def _classify_route(
    request: ApiRequest,
    uid: str,
    settings: RequestSettings,
    registry: Registry,
    bucket: Callable[[], Bucket],
) -> tuple[int, dict[str, Any]]:
    """``?path=`` (no body), or size checks and then :func:`classify_request` on the body."""
    if "path" in request.query:
        if request.content_length or request.read_body(0):
            raise invalid(
                "send the media as the body, or name an uploaded object with ?path=, not both"
            )
        return classify_path_request(
            request.query, uid, settings=settings, registry=registry, bucket=bucket
        )
    body = _bounded_body(request, settings)
    content_type = request.headers.get("content-type")
    return classify_request(
        body, content_type, request.query, uid, settings=settings, registry=registry
    )


def similar_request(
    request: ApiRequest,
    uid: str,
    *,
    settings: RequestSettings,
    registry: Registry,
    bucket: Callable[[], Bucket],
    db: Callable[[], Any],
) -> tuple[int, dict[str, Any]]:
    """``POST /v1/similar``: media in the body, or ``?path=`` of the caller's own upload."""
    try:
        k = similar.parse_k(request.query.get("k"))
        if "path" in request.query:
            if request.content_length or request.read_body(0):
                raise invalid("send the media as the body, or name an upload with ?path=, not both")
            query, model = similar.path_query(
                request.query["path"],
                uid,
                request.query.get("model"),
                settings=settings,
                registry=registry,
                bucket=bucket,
                db=db,
            )
        else:
            model = resolve_model(request.query.get("model"), settings.default_model, registry)
            body = _bounded_body(request, settings)
            media = extract_media(body, request.headers.get("content-type"))
            query = similar.media_query(media, model, settings)
        result = similar.search(query, model, uid, k, settings=settings, db=db)
    except Exception as exc:
        return _error(exc)
    logs.similar_served(f"{ENDPOINT} /v1/similar", model.key, len(result["matches"]))
    return 200, result


def _bounded_body(request: ApiRequest, settings: RequestSettings) -> bytes:
    """The body, refused (413) above the HTTPS cap before or while it is read."""
    limit = settings.request_limits().max_bytes + MULTIPART_OVERHEAD
    if request.content_length is not None and request.content_length > limit:
        raise body_too_large(f"{request.content_length:,} bytes", settings)
    body = request.read_body(limit)  # not read before auth: a 401 never costs the upload
    if len(body) > limit:
        raise body_too_large(f"more than {limit:,} bytes", settings)
    return body


def _default_bucket() -> Bucket:
    return bucket()


def handle_request(
    request: ApiRequest,
    *,
    verify_token: TokenVerifier,
    settings: RequestSettings,
    registry: Registry,
    bucket: Callable[[], Bucket] = _default_bucket,
    db: Callable[[], Any] = firestore_client,
) -> ApiResponse:
    """Route, authenticate and answer one request. Never raises.

    ``bucket`` makes the default bucket for ``?path=`` requests (only those create it);
    ``db`` the Firestore client for similarity searches.
    """
    route = route_of(request.path)
    methods = ROUTES.get(route)
    if methods is None:
        known = ", ".join(f"{ROUTES[r][0]} {r}" for r in ROUTES)
        return _reply(*_error(ApiError(ErrorCode.NOT_FOUND, f"no such route; try {known}")))
    if request.method.upper() not in methods:
        status, body = _error(
            ApiError(
                RequestCode.METHOD_NOT_ALLOWED,
                f"{route} accepts {', '.join(methods)}, not {request.method.upper()}",
            )
        )
        return ApiResponse(status, body, {"Allow": ", ".join(methods)})
    try:
        uid = None if route in PUBLIC_ROUTES else verify_token(bearer_token(request.headers))
        if route == "/v1/health":
            return _reply(200, {"status": "ok", "models": registry.keys()})
        if route == "/v1/models":
            keys = registry.keys()  # a registry, not a dict: keys() lists the model files
            models = [registry.get(key).describe() for key in keys]
            return _reply(200, {"default": settings.default_model, "models": models})
        assert uid is not None
        if route == "/v1/similar":
            found = similar_request(
                request, uid, settings=settings, registry=registry, bucket=bucket, db=db
            )
            return _reply(*found)
        return _reply(*_classify_route(request, uid, settings, registry, bucket))
    except Exception as exc:
        return _reply(*_error(exc))


def read_at_most(stream: Any, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of a body stream.

    Why not ``get_data()``: a chunked upload has no ``Content-Length`` to refuse up
    front, and reading all of it would hold the whole oversized body in memory.
    """
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def serve(request: flask.Request, *, settings: RequestSettings) -> flask.Response:
    """Flask adapter for ``https_fn.on_request`` (CORS is added by the decorator)."""
    import flask

    api_request = ApiRequest(
        method=request.method,
        path=request.path,
        headers={key.lower(): value for key, value in request.headers.items()},
        query={key: request.args.get(key, "") for key in request.args},
        content_length=request.content_length,
        read_body=lambda limit: read_at_most(request.stream, limit),
    )
    reply = handle_request(
        api_request,
        verify_token=verify_id_token,
        settings=settings,
        registry=default_registry(),
    )
    return flask.Response(
        json.dumps(reply.body),
        status=reply.status,
        headers=reply.headers,
        mimetype="application/json",
    )
