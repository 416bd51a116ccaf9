"""The Storage-triggered flow: upload event -> claim -> classify -> terminal document.

``main.py`` hands the event's fields here. Guarantees: an object under the watched
prefix always ends in a ``done`` or ``error`` document (never silence), repeated or
late deliveries change nothing (see :mod:`store.results`), and nothing is written to Storage,
so the trigger can never feed itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from media_classifier import logs
from media_classifier.errors import ErrorCode, MediaError
from media_classifier.flows.fetch import classify_object
from media_classifier.inference.model import default_registry
from media_classifier.inference.pipeline import Classification, Limits
from media_classifier.store import results
from media_classifier.store.uploads import Upload, generation_blob, owner_of, should_process


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


def _classify(upload: Upload, model_id: str, top_k: int, limits: Limits) -> Classification:
    try:
        model = default_registry().get(model_id)
    except KeyError as exc:
        raise MediaError(ErrorCode.UNKNOWN_MODEL, f"no model {model_id!r} is served") from exc
    return classify_object(generation_blob(upload), upload.size, model, top_k=top_k, limits=limits)


def handle_finalized(
    upload: Upload,
    *,
    db: Any,
    prefix: str,
    collection: str,
    model_id: str,
    top_k: int,
    limits: Limits,
    redo: Callable[[dict[str, Any]], str | None] | None = None,
) -> str:
    """Process one finalize event; returns what happened (for tests and logs).

    ``redo`` is for the backfill only: it may reopen a finished result of this
    generation (see :func:`store.results.decide`).
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
    settings; ``config.flow()`` reads them from the params once.
    """

    prefix: str
    collection: str
    top_k: int
    limits: Limits
    model_for: Callable[[str], str]

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
