"""Similar on demand: the caller's own uploads nearest to a picture, a clip, or an upload.

What ``POST /v1/similar`` and the callable ``similar`` share. The query is either media in
the request (classified as ``/v1/classify`` would, for its vector) or ``path``, an upload
of the caller's (its stored vector when the model file that wrote it is still the one
that reads its folder; otherwise it is read again). The search is Firestore's nearest
neighbours over the caller's own vectors only (``owner`` is a pre-filter, not a check
after the fact), of the same model file; the query's own upload is left out. Answer:
``{"matches": [{path, score, kind, startSec?, endSec?}], "model": {...}}``, nearest first;
``startSec``/``endSec`` say where in a video the match is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from media_classifier.api.http_errors import ApiError, invalid
from media_classifier.api.on_demand import (
    Bucket,
    Registry,
    RequestSettings,
    check_request_size,
    owned_path_and_model,
    stored_blob,
)
from media_classifier.errors import ErrorCode, MediaError, RequestCode, shown
from media_classifier.flows.fetch import classify_object
from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import classify_bytes, model_ref
from media_classifier.store import embeddings
from media_classifier.store.results import doc_id

DEFAULT_K = 10
MAX_K = 50
_DIGITS = re.compile(r"[0-9]{1,4}")


@dataclass(frozen=True)
class Query:
    """A query vector, and which upload it came from (left out of the answer)."""

    vector: list[float]
    path: str | None = None
    #: Documents of the query's own upload that a search may return: itself and segments.
    own_documents: int = 0


def parse_k(value: object) -> int:
    """``k``: how many matches, 1 to :data:`MAX_K`; absent means :data:`DEFAULT_K`."""
    if value is None or value == "":
        return DEFAULT_K
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and _DIGITS.fullmatch(value)
    ):
        number = int(value)
    if number is None or not 1 <= number <= MAX_K:
        raise invalid(f"k must be an integer from 1 to {MAX_K}, got {shown(value)}")
    return number


def _check_searchable(model: Model, settings: RequestSettings) -> str:
    """The vector collection, or NO_EMBEDDINGS: a request the caller did not get wrong (it
    is not INVALID_ARGUMENT) but that this model or deployment cannot answer."""
    if settings.embeddings is None:
        raise ApiError(
            RequestCode.NO_EMBEDDINGS,
            "similarity search is switched off here (EMBEDDINGS_COLLECTION is empty)",
        )
    if not model.embedding_dims:
        raise ApiError(
            RequestCode.NO_EMBEDDINGS,
            f"model {shown(model.key)} has no embedding output, so it cannot compare pictures;"
            " see docs/similarity.md",
        )
    return settings.embeddings


def media_query(data: bytes, model: Model, settings: RequestSettings) -> Query:
    """The vector of media sent in the request (same limits as ``/v1/classify``)."""
    _check_searchable(model, settings)
    check_request_size(len(data), settings)
    if not data:
        raise MediaError(ErrorCode.EMPTY, "the media is empty (0 bytes)")
    outcome = classify_bytes(data, model, top_k=1, limits=settings.request_limits())
    assert outcome.embedding is not None  # the model has the output (checked above)
    return Query(vector=outcome.embedding)


def path_query(
    value: object,
    uid: str,
    model_value: object,
    *,
    settings: RequestSettings,
    registry: Registry,
    bucket: Callable[[], Bucket],
    db: Callable[[], Any],
) -> tuple[Query, Model]:
    """The vector of one of the caller's uploads: stored, or read again if it is outdated.

    The path rule and the owner check come first, as for ``classify`` by path, so nothing
    about another user's uploads is revealed, not even whether they exist.
    """
    path, model = owned_path_and_model(value, uid, model_value, settings, registry)
    collection = _check_searchable(model, settings)
    snap = db().collection(collection).document(doc_id(path)).get()
    stored = (snap.to_dict() or {}) if snap.exists else {}
    if stored.get("owner") == uid and stored.get("modelSha") == model.sha:
        own = 1 + int(stored.get("segmentCount") or 0)
        return Query(vector=list(stored["vector"]), path=path, own_documents=own), model
    outcome = classify_object(*stored_blob(path, bucket()), model, top_k=1, limits=settings.limits)
    assert outcome.embedding is not None
    own = 1 + len(outcome.segment_embeddings)
    return Query(vector=outcome.embedding, path=path, own_documents=own), model


def search(
    query: Query,
    model: Model,
    uid: str,
    k: int,
    *,
    settings: RequestSettings,
    db: Callable[[], Any],
) -> dict[str, Any]:
    """The ``k`` nearest of the caller's uploads (pictures and video segments)."""
    collection = _check_searchable(model, settings)
    found = embeddings.nearest(
        db(),
        collection,
        query.vector,
        owner=uid,
        model_sha=model.sha,
        limit=k + query.own_documents,
    )
    matches = [match for _, match in found if query.path is None or match.path != query.path]
    return {"matches": [m.as_dict() for m in matches[:k]], "model": model_ref(model)}
