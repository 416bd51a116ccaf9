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
from media_classifier.flows import vectors
from media_classifier.flows.fetch import classify_object
from media_classifier.inference.model import Model, default_registry
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


def _classify(
    upload: Upload, model_id: str, top_k: int, limits: Limits
) -> tuple[Classification, Model]:
    try:
        model = default_registry().get(model_id)
    except KeyError as exc:
        raise MediaError(ErrorCode.UNKNOWN_MODEL, f"no model {model_id!r} is served") from exc
    blob = generation_blob(upload)
    return classify_object(blob, upload.size, model, top_k=top_k, limits=limits), model


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
    embeddings: str | None = None,
) -> str:
    """Process one finalize event; returns what happened (for tests and logs).

    ``redo`` is for the backfill only: it may reopen a finished result of this
    generation (see :func:`store.results.decide`). ``embeddings``: the collection of the
    uploads' vectors (:mod:`flows.vectors`), written with the result; None stores none.
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
    outcome: Classification | None = None
    owner = described["owner"]
    try:
        outcome, model = _classify(upload, model_id, top_k, limits)
        fields = {**outcome.fields(), "status": results.STATUS_DONE, "error": None}
        if embeddings is not None:
            fields["duplicateOf"] = _duplicate_of(db, embeddings, upload, owner, outcome, model)
        frames = outcome.frames
        top = outcome.labels[0]["label"] if outcome.labels else None
        logs.finished(upload.name, gen, outcome.kind, top, outcome.timings)
    except MediaError as exc:
        logs.media_error(upload.name, gen, str(exc.code), exc.message)
        fields = error_fields(exc)
    except Exception as exc:
        logs.internal_error(upload.name, gen, exc)
        fields = error_fields(MediaError(ErrorCode.INTERNAL, "internal error; see the logs"))
    alongside: results.Alongside = ()
    if embeddings is not None:
        done = outcome if fields["status"] == results.STATUS_DONE else None
        try:
            alongside = vectors.writes(db, embeddings, upload.name, upload.generation, owner, done)
        except Exception as exc:  # the labels still count: store them without the vectors
            logs.vectors_failed(upload.name, gen, "store vectors", exc)
    if not results.finish(db, owned, fields, frames, alongside):
        logs.superseded(upload.name, gen)
        return "superseded"
    return fields["status"]


def _duplicate_of(
    db: Any,
    embeddings: str,
    upload: Upload,
    owner: str | None,
    outcome: Classification,
    model: Model,
) -> str | None:
    """:func:`flows.vectors.duplicate_of`; a failed search costs the hint, not the result."""
    try:
        return vectors.duplicate_of(db, embeddings, upload.name, owner, outcome, model)
    except Exception as exc:
        logs.vectors_failed(upload.name, str(upload.generation), "near-duplicate search", exc)
        return None


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
    #: Collection of the uploads' vectors (``EMBEDDINGS_COLLECTION``); None stores none.
    embeddings: str | None = None

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
            embeddings=self.embeddings,
        )


def handle_deleted(
    upload: Upload, *, db: Any, prefix: str, collection: str, embeddings: str | None = None
) -> bool:
    """Remove the result (and vectors) of a deleted object, unless a newer generation owns it."""
    if not should_process(upload.name, prefix):
        return False
    alongside = vectors.removals(db, embeddings, upload.name) if embeddings else ()
    deleted = results.delete_result(db, collection, upload.name, upload.generation, alongside)
    logs.result_deleted(upload.name, str(upload.generation), deleted)
    return deleted
