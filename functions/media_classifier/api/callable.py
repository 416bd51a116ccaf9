"""The callable ``classify``: apps send ``{path}`` or ``{image}`` with the Firebase SDKs.

Request ``data`` (JSON object; exactly one of ``path`` / ``image``)::

    {"path": "uploads/<uid>/cat.jpg"}           # an object the caller owns, default bucket
    {"image": "<base64>" | "data:image/png;base64,<...>", "model": "...", "topK": 5}

The reply is the result fields of the Storage trigger's document (``kind``,
``contentType``, ``labels``, ``model``, ``timings``, ``video``; plus ``path`` for
objects). Failures are ``HttpsError``s whose code comes from :mod:`api.http_errors` and whose
``details.code`` is the stable code also used by REST and result documents.

:func:`classify_call` is the logic on parsed values; :func:`handle_call` adapts the SDK's
``CallableRequest`` (auth, App Check, logging, error mapping).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from media_classifier import logs
from media_classifier.api import similar
from media_classifier.api.http_errors import ApiError, RequestCode, invalid, logged
from media_classifier.api.on_demand import (
    Bucket,
    Registry,
    RequestSettings,
    check_request_size,
    classify_media,
    classify_path,
    parse_top_k,
    resolve_model,
)
from media_classifier.errors import ErrorCode, MediaError, shown_names
from media_classifier.inference.model import default_registry
from media_classifier.store.clients import bucket, firestore_client

if TYPE_CHECKING:
    from firebase_functions.https_fn import CallableRequest

ENDPOINT = "classify"
ALLOWED_KEYS = ("path", "image", "model", "topK")


@dataclass(frozen=True)
class CallInput:
    """A validated request: exactly one of ``path`` / ``image`` is set."""

    path: str | None
    image: bytes | None
    model: object
    top_k: int


def decode_base64(value: object, settings: RequestSettings) -> bytes:
    """Base64 (standard or URL-safe, padding optional, a ``data:`` URL prefix allowed).

    The size is checked on the encoded length first, so an oversized string is refused
    without allocating its decoded copy.
    """
    if not isinstance(value, str):
        raise invalid("image must be a base64-encoded string")
    text = value
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise invalid("image data URLs must be base64: data:<type>;base64,<data>")
    text = "".join(text.split())  # encoders may wrap lines
    check_request_size(len(text) * 3 // 4 - text[-2:].count("="), settings)
    altchars = b"-_" if ("-" in text or "_" in text) else None
    padded = text + "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("image is not valid base64; send the file's bytes base64-encoded") from None
    if not data:
        raise MediaError(ErrorCode.EMPTY, "image is empty (0 bytes)")
    return data


def parse_call(data: object, settings: RequestSettings) -> CallInput:
    """Validate the callable's ``data`` without touching Storage or models."""
    if not isinstance(data, dict):
        raise invalid('send an object: {"path": "uploads/<uid>/..."} or {"image": "<base64>"}')
    unknown = sorted(str(key) for key in data if key not in ALLOWED_KEYS)
    if unknown:
        raise invalid(
            f"unknown field(s) {shown_names(unknown)}; allowed: {', '.join(ALLOWED_KEYS)}"
        )
    has_path, has_image = data.get("path") is not None, data.get("image") is not None
    if has_path == has_image:
        raise invalid("send exactly one of path (an uploaded object) or image (base64)")
    top_k = parse_top_k(data.get("topK"), settings.top_k)
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid("model must be a model id string")
    if has_path:
        return CallInput(path=data["path"], image=None, model=model, top_k=top_k)
    image = decode_base64(data["image"], settings)
    return CallInput(path=None, image=image, model=model, top_k=top_k)


def classify_call(
    data: object,
    uid: str | None,
    *,
    settings: RequestSettings,
    registry: Registry,
    bucket: Callable[[], Bucket],
) -> dict[str, Any]:
    """The callable's logic: validate, check ownership, classify; raises :class:`ApiError`.

    ``bucket`` is a factory so an ``{image}`` call never creates a Storage client.
    """
    if not uid:
        raise ApiError(RequestCode.UNAUTHENTICATED, "sign in to classify media")
    call = parse_call(data, settings)
    if call.path is not None:
        return classify_path(
            call.path,
            uid,
            call.model,
            call.top_k,
            settings=settings,
            registry=registry,
            bucket=bucket,
        )
    assert call.image is not None
    model = resolve_model(call.model, settings.default_model, registry)
    return classify_media(call.image, model, call.top_k, settings)


def handle_call(
    request: CallableRequest[Any], *, settings: RequestSettings, enforce_app_check: bool
) -> dict[str, Any]:
    """Adapt the SDK request: App Check, auth, logging, and errors as ``HttpsError``.

    App Check is checked here rather than with the decorator's ``enforce_app_check``
    because that option takes a plain bool at import time; a param is only known at
    run time, and this way one deployment switches it with ``ENFORCE_APP_CHECK``.
    """
    try:
        _check_app(request, enforce_app_check)
        uid = request.auth.uid if request.auth is not None else None
        result = classify_call(
            request.data,
            uid,
            settings=settings,
            registry=default_registry(),
            bucket=bucket,
        )
    except Exception as exc:
        error = logged(ENDPOINT, exc)
        raise error.to_https_error() from None
    top = result["labels"][0]["label"] if result.get("labels") else None
    logs.request_served(ENDPOINT, result["model"]["id"], result["kind"], top, result["timings"])
    return result


def _check_app(request: CallableRequest[Any], enforce_app_check: bool) -> None:
    if enforce_app_check and request.app is None:
        raise ApiError(
            RequestCode.UNAUTHENTICATED,
            "App Check is enforced: call from an app registered with Firebase App Check",
        )


# --- the callable ``similar`` -------------------------------------------------------------

SIMILAR_ENDPOINT = "similar"
SIMILAR_KEYS = ("path", "image", "model", "k")


def similar_call(
    data: object,
    uid: str | None,
    *,
    settings: RequestSettings,
    registry: Registry,
    bucket: Callable[[], Bucket],
    db: Callable[[], Any],
) -> dict[str, Any]:
    """``{path}`` or ``{image}``, optional ``model`` and ``k``: the caller's nearest uploads."""
    if not uid:
        raise ApiError(RequestCode.UNAUTHENTICATED, "sign in to search your uploads")
    if not isinstance(data, dict):
        raise invalid('send an object: {"path": "uploads/<uid>/..."} or {"image": "<base64>"}')
    unknown = sorted(str(key) for key in data if key not in SIMILAR_KEYS)
    if unknown:
        raise invalid(
            f"unknown field(s) {shown_names(unknown)}; allowed: {', '.join(SIMILAR_KEYS)}"
        )
    if (data.get("path") is None) == (data.get("image") is None):
        raise invalid("send exactly one of path (an uploaded object) or image (base64)")
    k = similar.parse_k(data.get("k"))
    if data.get("model") is not None and not isinstance(data.get("model"), str):
        raise invalid("model must be a model id string")
    if data.get("path") is not None:
        query, model = similar.path_query(
            data["path"],
            uid,
            data.get("model"),
            settings=settings,
            registry=registry,
            bucket=bucket,
            db=db,
        )
    else:
        image = decode_base64(data["image"], settings)
        model = resolve_model(data.get("model"), settings.default_model, registry)
        query = similar.media_query(image, model, settings)
    return similar.search(query, model, uid, k, settings=settings, db=db)


def handle_similar_call(
    request: CallableRequest[Any], *, settings: RequestSettings, enforce_app_check: bool
) -> dict[str, Any]:
    """The SDK adapter of :func:`similar_call` (App Check, auth, errors as ``HttpsError``)."""
    try:
        _check_app(request, enforce_app_check)
        uid = request.auth.uid if request.auth is not None else None
        result = similar_call(
            request.data,
            uid,
            settings=settings,
            registry=default_registry(),
            bucket=bucket,
            db=firestore_client,
        )
    except Exception as exc:
        raise logged(SIMILAR_ENDPOINT, exc).to_https_error() from None
    logs.similar_served(SIMILAR_ENDPOINT, result["model"]["id"], len(result["matches"]))
    return result
