"""Deployment configuration, declared as ``firebase_functions.params``.

Why params: the Firebase CLI asks for (or reads from ``functions/.env.<project>``) each
value at deploy time and the emulator reads the same files, so one declaration serves
local runs and production.

This module is also the composition root: :func:`flow`, :func:`request_settings` and
:func:`refresh_options` turn the raw values into the plain objects the layers below take,
so no module below reads a param or imports the SDK's params (``main.py`` and the
operator commands call these).
"""

from __future__ import annotations

from firebase_functions import params

from media_classifier.api.on_demand import RequestSettings
from media_classifier.flows.refresh import RefreshOptions
from media_classifier.flows.upload import Flow
from media_classifier.inference.model import default_registry
from media_classifier.inference.pipeline import Limits, model_ref
from media_classifier.store.uploads import route_model

WATCH_PREFIX = params.StringParam(
    "WATCH_PREFIX",
    default="uploads/",
    description="Only objects under this prefix are classified; owner = next path segment.",
)
RESULTS_COLLECTION = params.StringParam(
    "RESULTS_COLLECTION",
    default="mediaResults",
    description="Firestore collection of result documents (id = encodeURIComponent(path)).",
)
EMBEDDINGS_COLLECTION = params.StringParam(
    "EMBEDDINGS_COLLECTION",
    default="mediaEmbeddings",
    description=(
        "Firestore collection of the uploads' vectors (near-duplicates, /v1/similar);"
        " the functions alone read it. Empty: store none."
    ),
)
TOP_K = params.IntParam("TOP_K", default=5, description="Labels kept per result.")
DEFAULT_MODEL = params.StringParam(
    "DEFAULT_MODEL",
    default="imagenet_mobilenet_v2",
    description="Model id (file name in functions/models up to the first dot) used by default.",
)
MODEL_ROUTES = params.StringParam(
    "MODEL_ROUTES",
    default="fashion=fashion_mnist_mobilenet_v2",
    description="Comma-separated folder=model pairs: uploads/{uid}/{folder}/... uses that model.",
)
MAX_UPLOAD_BYTES = params.IntParam(
    "MAX_UPLOAD_BYTES", default=100 * 1024 * 1024, description="Larger files: TOO_LARGE."
)
MAX_IMAGE_PIXELS = params.IntParam(
    "MAX_IMAGE_PIXELS",
    default=50_000_000,
    description="Images declaring more pixels are refused (TOO_LARGE) before decoding.",
)
MAX_VIDEO_SECONDS = params.IntParam(
    "MAX_VIDEO_SECONDS", default=600, description="Longer videos: TOO_LONG."
)
VIDEO_FRAME_INTERVAL_MS = params.IntParam(
    "VIDEO_FRAME_INTERVAL_MS", default=1000, description="One video frame analysed per interval."
)
VIDEO_MAX_FRAMES = params.IntParam(
    "VIDEO_MAX_FRAMES", default=600, description="At most this many frames per video."
)
ENFORCE_APP_CHECK = params.BoolParam(
    "ENFORCE_APP_CHECK", default=False, description="Require App Check tokens on HTTPS calls."
)


def limits() -> Limits:
    """The decoding limits in force for this instance."""
    return Limits(
        max_bytes=MAX_UPLOAD_BYTES.value,
        max_pixels=MAX_IMAGE_PIXELS.value,
        max_video_seconds=float(MAX_VIDEO_SECONDS.value),
        frame_interval_sec=VIDEO_FRAME_INTERVAL_MS.value / 1000.0,
        max_frames=VIDEO_MAX_FRAMES.value,
    )


def embeddings_collection() -> str | None:
    """``EMBEDDINGS_COLLECTION``, or None when it is empty (no vectors stored or searched)."""
    return EMBEDDINGS_COLLECTION.value or None


def routes() -> dict[str, str]:
    """``MODEL_ROUTES`` parsed: folder name -> model id."""
    pairs = (item.split("=", 1) for item in MODEL_ROUTES.value.split(",") if "=" in item)
    return {folder.strip(): model.strip() for folder, model in pairs if folder.strip()}


def model_for(object_name: str) -> str:
    """The model id for an uploaded object (the folder routes, else the default)."""
    return route_model(object_name, WATCH_PREFIX.value, routes(), DEFAULT_MODEL.value)


# --- HTTPS triggers (callable ``classify`` and REST ``api``) ---------------------------
HTTPS_MAX_BYTES = params.IntParam(
    "HTTPS_MAX_BYTES",
    default=10 * 1024 * 1024,
    description=(
        "Largest media carried inside an HTTPS request (callable base64 image after decoding,"
        " REST body). Cloud Functions caps requests at 32 MB; larger files go through Storage."
    ),
)


# --- Refresh: the backfill fanned out over Cloud Tasks (media_classifier/flows/refresh.py) ------
REFRESH_COLLECTION = params.StringParam(
    "REFRESH_COLLECTION",
    default="mediaRefreshRuns",
    description="Firestore collection of refresh progress documents (admins read them).",
)
REFRESH_BATCH_SIZE = params.IntParam(
    "REFRESH_BATCH_SIZE", default=20, description="Objects per refresh task."
)
REFRESH_MAX_DISPATCHES_PER_SECOND = params.IntParam(
    "REFRESH_MAX_DISPATCHES_PER_SECOND",
    default=5,
    description="Refresh tasks Cloud Tasks starts per second (objects/s = this x batch size).",
)
REFRESH_MAX_CONCURRENT_DISPATCHES = params.IntParam(
    "REFRESH_MAX_CONCURRENT_DISPATCHES",
    default=10,
    description="Refresh tasks running at once (bounds instances and Firestore load).",
)


# --- the objects the layers take --------------------------------------------------------


def flow() -> Flow:
    """The Storage trigger's flow as deployed; the backfill, refresh and recovery run it too."""
    return Flow(
        prefix=WATCH_PREFIX.value,
        collection=RESULTS_COLLECTION.value,
        top_k=TOP_K.value,
        limits=limits(),
        model_for=model_for,
        embeddings=embeddings_collection(),
    )


def request_settings() -> RequestSettings:
    """What the HTTPS functions need to answer a request, read from the params."""
    return RequestSettings(
        default_model=DEFAULT_MODEL.value,
        top_k=TOP_K.value,
        limits=limits(),
        max_request_bytes=HTTPS_MAX_BYTES.value,
        prefix=WATCH_PREFIX.value,
        routes=routes(),
        embeddings=embeddings_collection(),
    )


def refresh_options() -> RefreshOptions:
    """The refresh's settings as deployed (the model reference read from the served files)."""
    registry = default_registry()
    return RefreshOptions(
        flow=flow(),
        collection=REFRESH_COLLECTION.value,
        batch=REFRESH_BATCH_SIZE.value,
        model_ref=lambda model_id: model_ref(registry.get(model_id)),
    )
