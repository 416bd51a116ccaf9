"""An upload's vectors: written with its result, found again as a near-duplicate, removed.

The trigger's flow calls :func:`writes` and :func:`duplicate_of` between classifying and
finishing, so the vectors commit in the same preconditioned write as the result (a
superseded worker writes neither), and a re-upload or an error result replaces or removes
the previous generation's vectors. :func:`removals` does the same when the object is
deleted. Layout and queries: :mod:`media_classifier.store.embeddings`.
"""

from __future__ import annotations

from typing import Any

from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Classification
from media_classifier.store import embeddings
from media_classifier.store.results import Alongside, doc_id


def writes(
    db: Any,
    collection: str,
    name: str,
    generation: int,
    owner: str | None,
    outcome: Classification | None,
) -> Alongside:
    """The vector documents to set and the stale ones to delete with this result.

    No vectors (an error, a model without an embedding output, a file outside any owner's
    folder): the previous generation's are deleted, so nothing stale stays searchable.
    """
    result_id = doc_id(name)
    ref = db.collection(collection)
    docs: dict[str, dict[str, Any]] = {}
    if outcome is not None and outcome.embedding is not None and owner is not None:
        base = {
            "owner": owner,
            "path": name,
            "generation": str(generation),
            "kind": outcome.kind,
            "modelId": outcome.model["id"],
            "modelSha": outcome.model["sha"],
        }
        segments = (outcome.video or {}).get("segments") or []
        vectors = outcome.segment_embeddings if segments else []
        docs = embeddings.documents(result_id, base, outcome.embedding, segments, vectors)
    previous = embeddings.previous_segments(db, collection, result_id)
    sets = [
        (ref.document(doc), embeddings.firestore_fields(fields)) for doc, fields in docs.items()
    ]
    stale = [(ref.document(doc), None) for doc in embeddings.stale_ids(result_id, previous, docs)]
    return [*sets, *stale]


def duplicate_of(
    db: Any, collection: str, name: str, owner: str | None, outcome: Classification, model: Model
) -> str | None:
    """The owner's other upload that is the same picture or clip, if one is stored.

    "The same" is the model's own measured ``duplicate_threshold`` on the cosine
    similarity of the whole vectors; a model without one (or without vectors) finds none.
    """
    if outcome.embedding is None or model.duplicate_threshold is None or owner is None:
        return None
    found = embeddings.nearest(
        db,
        collection,
        outcome.embedding,
        owner=owner,
        model_sha=model.sha,
        limit=2,  # the upload itself may be stored already (a redelivery, a refresh)
        whole=True,
    )
    for _, match in found:
        if match.path != name and match.score >= model.duplicate_threshold:
            return match.path
    return None


def removals(db: Any, collection: str, name: str) -> Alongside:
    """Deletes of every vector of a deleted object (its whole document and segments)."""
    result_id = doc_id(name)
    previous = embeddings.previous_segments(db, collection, result_id)
    ref = db.collection(collection)
    return [(ref.document(doc), None) for doc in embeddings.stale_ids(result_id, previous, {})]
