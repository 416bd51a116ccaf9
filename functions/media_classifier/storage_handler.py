"""The Storage-triggered flow: upload event -> claim -> classify -> terminal document.

``main.py`` hands the event's fields here. Guarantees: an object under the watched
prefix always ends in a ``done`` or ``error`` document (never silence), repeated or
late deliveries change nothing (see :mod:`results`), and nothing is written to Storage,
so the trigger can never feed itself.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import logs, results
from .errors import ErrorCode, MediaError

#: Custom metadata never copied into a result: the Firebase SDKs keep the object's
#: download token here, and anyone holding it can read the file.
SECRET_METADATA = frozenset({"firebaseStorageDownloadTokens"})


@dataclass(frozen=True)
class Upload:
    """The parts of a Storage object event the flow uses."""

    bucket: str
    name: str
    generation: int
    size: int
    content_type: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, bucket: str, obj: Any) -> Upload:
        """From anything with a Storage object's fields: an event's data, a listed blob."""
        return cls(
            bucket=bucket,
            name=obj.name,
            generation=int(obj.generation or 0),
            size=int(obj.size or 0),
            content_type=obj.content_type,
            metadata=custom_metadata(getattr(obj, "metadata", None)),
        )


def custom_metadata(raw: Any) -> tuple[tuple[str, str], ...]:
    """The uploader's custom metadata worth echoing in the result, sorted (pure).

    Apps set it to find results by their own ids (``customMetadata: {postId}``). String
    pairs only, :data:`SECRET_METADATA` never (Storage caps the whole at 8 KiB).
    """
    if not isinstance(raw, dict):
        return ()
    pairs = (
        (key, value)
        for key, value in raw.items()
        if isinstance(key, str) and isinstance(value, str) and key not in SECRET_METADATA
    )
    return tuple(sorted(pairs))


def should_process(name: str, prefix: str) -> bool:
    """Only real objects strictly under the watched prefix (folder placeholders excluded)."""
    return (
        bool(prefix)
        and name.startswith(prefix)
        and len(name) > len(prefix)
        and not (name.endswith("/"))
    )


def owner_of(name: str, prefix: str) -> str | None:
    """The uid in ``{prefix}{uid}/...``; None for files directly under the prefix."""
    rest = name[len(prefix) :]
    uid, sep, _ = rest.partition("/")
    return uid if sep and uid else None


def route_model(name: str, prefix: str, routes: dict[str, str], default: str) -> str:
    """The model for an object: ``{prefix}{uid}/{folder}/...`` uses ``routes[folder]``."""
    parts = name[len(prefix) :].split("/")
    if len(parts) >= 3 and parts[1] in routes:
        return routes[parts[1]]
    return default


def describe(upload: Upload, prefix: str) -> dict[str, Any]:
    """The document fields that describe the upload itself."""
    return {
        "bucket": upload.bucket,
        "path": upload.name,
        "owner": owner_of(upload.name, prefix),
        "size": upload.size,
        "clientContentType": upload.content_type,
        "customMetadata": dict(upload.metadata),
        "contentType": None,
        "kind": None,
    }


def error_fields(error: MediaError) -> dict[str, Any]:
    return {"status": results.STATUS_ERROR, "error": error.as_dict(), "labels": []}


def download(upload: Upload, directory: str) -> str:
    """Fetch exactly the event's generation, so a re-upload cannot swap the bytes."""
    from google.api_core import exceptions

    from .clients import bucket

    path = os.path.join(directory, "object")
    blob = bucket(upload.bucket).blob(upload.name, generation=upload.generation)
    try:
        blob.download_to_filename(path)
    except exceptions.NotFound as exc:
        raise MediaError(
            ErrorCode.NOT_FOUND, "the object was deleted or replaced before it was read"
        ) from exc
    return path


def _classify(upload: Upload, model_id: str, top_k: int, limits: Any) -> Any:
    from .model import default_registry
    from .pipeline import check_size, classify_file

    check_size(upload.size, limits)  # before downloading anything
    try:
        model = default_registry().get(model_id)
    except KeyError as exc:
        raise MediaError(ErrorCode.UNKNOWN_MODEL, f"no model {model_id!r} is served") from exc
    with tempfile.TemporaryDirectory(prefix="mc-") as tmp:
        started = time.perf_counter()
        path = download(upload, tmp)
        download_ms = round((time.perf_counter() - started) * 1000, 2)
        outcome = classify_file(path, model, top_k=top_k, limits=limits)
    outcome.timings = {"download": download_ms, **outcome.timings}
    return outcome


def handle_finalized(
    upload: Upload,
    *,
    db: Any,
    prefix: str,
    collection: str,
    model_id: str,
    top_k: int,
    limits: Any,
    redo: Callable[[dict[str, Any]], str | None] | None = None,
) -> str:
    """Process one finalize event; returns what happened (for tests and logs).

    ``redo`` is for the backfill only: it may reopen a finished result of this
    generation (see :func:`results.decide`).
    """
    if not should_process(upload.name, prefix):
        logs.ignored_outside_prefix(upload.name, prefix)
        return "ignored"
    gen = str(upload.generation)
    described = describe(upload, prefix)
    owned = results.claim(db, collection, upload.name, upload.generation, described, redo)
    if isinstance(owned, results.Decision):
        logs.duplicate_event(upload.name, gen, owned.reason)
        return "skipped"
    logs.started(upload.name, gen, upload.size, model_id)
    frames: list[dict[str, Any]] = []
    try:
        outcome = _classify(upload, model_id, top_k, limits)
        fields = {**outcome.fields(), "status": results.STATUS_DONE, "error": None}
        frames = outcome.frames
        top = outcome.labels[0]["label"] if outcome.labels else None
        logs.finished(upload.name, gen, outcome.kind, top, outcome.timings)
    except MediaError as exc:
        logs.media_error(upload.name, gen, str(exc.code), exc.message)
        fields = error_fields(exc)
    except Exception as exc:
        logs.internal_error(upload.name, gen, exc)
        fields = error_fields(MediaError(ErrorCode.INTERNAL, "internal error; see the logs"))
    if not results.finish(db, owned, fields, frames):
        logs.superseded(upload.name, gen)
        return "superseded"
    return fields["status"]


@dataclass(frozen=True)
class Flow:
    """The deployment's settings for :func:`handle_finalized`, for every caller of it.

    The trigger, the backfill and the recovery run the same flow with the same
    settings; :meth:`from_config` reads them from the params once.
    """

    prefix: str
    collection: str
    top_k: int
    limits: Any
    model_for: Callable[[str], str]

    @classmethod
    def from_config(cls) -> Flow:
        """The deployed configuration (``firebase_functions.params``)."""
        from . import config

        return cls(
            prefix=config.WATCH_PREFIX.value,
            collection=config.RESULTS_COLLECTION.value,
            top_k=config.TOP_K.value,
            limits=config.limits(),
            model_for=config.model_for,
        )

    def run(
        self,
        upload: Upload,
        db: Any,
        redo: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> str:
        """:func:`handle_finalized` with these settings and the upload's routed model."""
        return handle_finalized(
            upload,
            db=db,
            prefix=self.prefix,
            collection=self.collection,
            model_id=self.model_for(upload.name),
            top_k=self.top_k,
            limits=self.limits,
            redo=redo,
        )


def handle_deleted(upload: Upload, *, db: Any, prefix: str, collection: str) -> bool:
    """Remove the result of a deleted object (unless a newer generation owns it)."""
    if not should_process(upload.name, prefix):
        return False
    deleted = results.delete_result(db, collection, upload.name, upload.generation)
    logs.result_deleted(upload.name, str(upload.generation), deleted)
    return deleted
