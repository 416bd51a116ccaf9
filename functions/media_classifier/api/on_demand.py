"""Classification on demand: what the callable ``classify`` and the REST ``api`` share.

Why a module of its own: both HTTPS entry points validate the same options (model,
topK), enforce the same size limit and must answer with exactly the fields a result
document of the Storage trigger has. Everything here takes plain values (bytes, a
uid, a :class:`RequestSettings`) so it is unit-tested without a server; reading params and
creating Admin SDK clients happens only in ``config.request_settings()`` and the handlers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from media_classifier.api.http_errors import ApiError, RequestCode, invalid
from media_classifier.api.object_path import owned_object_path
from media_classifier.errors import ErrorCode, MediaError, shown
from media_classifier.flows.fetch import classify_object
from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Limits, classify_bytes
from media_classifier.store.clients import get_app
from media_classifier.store.uploads import route_model

#: Bounds of ``topK``: at least one label; 20 is plenty for a UI and keeps replies small.
MIN_TOP_K = 1
MAX_TOP_K = 20
_DIGITS = re.compile(r"[0-9]{1,6}")


@dataclass(frozen=True)
class RequestSettings:
    """The configuration a request needs, as plain values (``config.request_settings()``)."""

    default_model: str = "imagenet_mobilenet_v2"
    top_k: int = 5
    limits: Limits = field(default_factory=Limits)
    max_request_bytes: int = 10 * 1024 * 1024
    prefix: str = "uploads/"
    routes: Mapping[str, str] = field(default_factory=dict)
    #: Collection of the uploads' vectors (``EMBEDDINGS_COLLECTION``); None: no similarity.
    embeddings: str | None = None

    def request_limits(self) -> Limits:
        """Limits for media carried in a request: never more than the request cap."""
        return replace(self.limits, max_bytes=min(self.limits.max_bytes, self.max_request_bytes))


class Registry(Protocol):
    """What the handlers need of :class:`media_classifier.inference.model.ModelRegistry`."""

    def keys(self) -> list[str]: ...

    def get(self, key: str) -> Model: ...


def parse_top_k(value: object, default: int) -> int:
    """``topK`` from a JSON number or a query string; absent means the configured default.

    Strict on purpose: ``true``, ``2.5``, ``"-1"`` or ``" 3"`` are mistakes the caller
    should hear about rather than have silently rounded or clamped.
    """
    if value is None or value == "":
        return default
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)  # JavaScript has only one number type: 5 may arrive as 5.0
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    if number is None or not MIN_TOP_K <= number <= MAX_TOP_K:
        raise invalid(
            f"topK must be an integer from {MIN_TOP_K} to {MAX_TOP_K}, got {shown(value)}"
        )
    return number


def resolve_model(value: object, default: str, registry: Registry) -> Model:
    """The model a request names (its id, see ``GET /v1/models``), else the default."""
    key = default if value is None or value == "" else value
    if not isinstance(key, str):
        raise invalid(f"model must be a model id string, got {type(value).__name__}")
    served = registry.keys()
    if key not in served:
        raise ApiError(
            ErrorCode.UNKNOWN_MODEL,
            f"no model {shown(key)} is served; available: {', '.join(served) or 'none'}",
        )
    return registry.get(key)


def check_request_size(size: int, settings: RequestSettings) -> None:
    """Refuse media above the HTTPS cap, saying how to send larger files instead."""
    limit = settings.request_limits().max_bytes
    if size > limit:
        raise ApiError(
            ErrorCode.TOO_LARGE,
            f"the media is {size:,} bytes; HTTPS requests accept up to {limit:,}. Upload larger"
            f" files to Storage under {settings.prefix}<uid>/ and classify them by path.",
        )


def classify_media(
    data: bytes, model: Model, top_k: int, settings: RequestSettings
) -> dict[str, Any]:
    """Classify media received in a request; the reply has the result document's fields."""
    check_request_size(len(data), settings)
    if not data:
        raise MediaError(ErrorCode.EMPTY, "the media is empty (0 bytes)")
    outcome = classify_bytes(data, model, top_k=top_k, limits=settings.request_limits())
    return outcome.fields()


# --- who is calling -------------------------------------------------------------------

UNAUTHENTICATED_HINT = "get a fresh ID token with getIdToken() and retry"


def verify_id_token(token: str) -> str:
    """The uid of a valid ID token whose user exists, is enabled and was not signed out.

    ``check_revoked=True`` costs one Auth backend lookup (``accounts:lookup``) per call:
    without it a token stays valid for up to an hour after its user was disabled,
    deleted or had their sessions revoked (README, "Classify on demand"). Failures of
    the Auth backend itself propagate (``INTERNAL``): they are not the caller's doing.
    firebase-admin verifies the Auth emulator's unsigned tokens by itself when
    ``FIREBASE_AUTH_EMULATOR_HOST`` is set, which the Functions emulator does.
    """
    from firebase_admin import auth

    try:
        claims = auth.verify_id_token(
            token, app=get_app(), check_revoked=True, clock_skew_seconds=5
        )
    except auth.RevokedIdTokenError:
        raise ApiError(
            RequestCode.UNAUTHENTICATED,
            "this sign-in was revoked (signed out everywhere, or the password changed);"
            " sign in again",
        ) from None
    except auth.UserDisabledError:
        raise ApiError(RequestCode.UNAUTHENTICATED, "this user account is disabled") from None
    except auth.UserNotFoundError:
        raise ApiError(RequestCode.UNAUTHENTICATED, "this user account no longer exists") from None
    except (ValueError, auth.InvalidIdTokenError):
        raise ApiError(
            RequestCode.UNAUTHENTICATED,
            f"the ID token is invalid or expired; {UNAUTHENTICATED_HINT}",
        ) from None
    uid = claims.get("uid") or claims.get("sub")
    if not uid:
        raise ApiError(RequestCode.UNAUTHENTICATED, "the ID token names no user")
    return str(uid)


# --- objects in the default bucket (callable ``{path}``) -------------------------------


def check_object_path(path: object, uid: str, prefix: str) -> str:
    """A client-sent object name the caller owns (``{prefix}{uid}/...``), else an ApiError.

    The rule is :func:`media_classifier.api.object_path.owned_object_path`: malformed names
    (``..``, backslashes, control characters, ...) are ``INVALID_ARGUMENT`` before the
    owner check, and both happen before Storage is touched.
    """
    return owned_object_path(path, uid, prefix)


class Bucket(Protocol):
    """What :func:`classify_stored` needs of ``google.cloud.storage.Bucket``."""

    def get_blob(self, blob_name: str) -> Any: ...


def classify_stored(
    path: str, bucket: Bucket, model: Model, top_k: int, settings: RequestSettings
) -> dict[str, Any]:
    """Classify an (owner-checked) object of the default bucket, read with the Admin SDK.

    The same size limit as the Storage trigger applies (the file does not travel in the
    request), checked from the object's metadata before any byte is downloaded.
    """
    outcome = classify_object(
        *stored_blob(path, bucket), model, top_k=top_k, limits=settings.limits
    )
    return {"path": path, **outcome.fields()}


def stored_blob(path: str, bucket: Bucket) -> tuple[Any, int]:
    """The object (latest generation) and its size from its metadata; NOT_FOUND if none."""
    blob = bucket.get_blob(path)
    if blob is None:
        raise MediaError(ErrorCode.NOT_FOUND, f"no object {shown(path, 200)} in the default bucket")
    return blob, int(blob.size or 0)


def owned_path_and_model(
    value: object, uid: str, model: object, settings: RequestSettings, registry: Registry
) -> tuple[str, Model]:
    """A client-named object of the caller's, and the model that reads it.

    The path rule and the owner check come first (:func:`check_object_path`), so nothing
    about other users' objects, or whether they exist, is revealed; then the folder's
    model route, as the Storage trigger would pick it, unless ``model`` names one.
    """
    path = check_object_path(value, uid, settings.prefix)
    default = route_model(path, settings.prefix, dict(settings.routes), settings.default_model)
    return path, resolve_model(model, default, registry)


def classify_path(
    value: object,
    uid: str,
    model: object,
    top_k: int,
    *,
    settings: RequestSettings,
    registry: Registry,
    bucket: Callable[[], Bucket],
) -> dict[str, Any]:
    """Classify an object a client names (callable ``{path}``, REST ``?path=``).

    Checked by :func:`owned_path_and_model` first. ``bucket`` is a factory: a refused
    request never creates a Storage client.
    """
    path, chosen = owned_path_and_model(value, uid, model, settings, registry)
    return classify_stored(path, bucket(), chosen, top_k, settings)
