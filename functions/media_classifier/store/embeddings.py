"""Picture vectors in Firestore: one document per upload (and per video segment), searched.

Why a collection of its own (``mediaEmbeddings``): the vectors are for the functions only
(a result document is what clients read, and 1,280 floats would triple its size); the
security rules refuse clients everything here. Layout, every id derived from the result's
(never search-then-write):

* ``{resultId}``: the picture, or a whole clip (the mean direction of its frames):
  ``owner``, ``path``, ``generation``, ``kind``, ``modelId``, ``modelSha``, ``whole: true``,
  ``searchable`` (true for pictures), ``segmentCount``, ``vector``;
* ``{resultId}#{n}``: segment ``n`` of a video's timeline: the same fields with
  ``whole: false``, ``searchable: true``, ``startSec``, ``endSec``.

Vectors of different model files live in different spaces, so every search filters on
``modelSha`` as well as on ``owner``; a retrain makes the refresh rewrite them. The vector
indexes these queries need are declared in ``firestore.indexes.json``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from media_classifier.store.results import MAX_ID_BYTES

#: Separates a result id from a segment number: ``encodeURIComponent`` never leaves a '#'.
SEGMENT_SEPARATOR = "#"


@dataclass(frozen=True)
class Match:
    """One neighbour: which upload (and which part of a video), and how alike (cosine)."""

    path: str
    score: float
    kind: str
    start_sec: float | None = None
    end_sec: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``/v1/similar``'s ``matches`` items."""
        found: dict[str, Any] = {"path": self.path, "score": self.score, "kind": self.kind}
        if self.start_sec is not None:
            found |= {"startSec": self.start_sec, "endSec": self.end_sec}
        return found


def segment_id(result_id: str, index: int) -> str:
    """The id of a video segment's vector document (pure)."""
    suffix = f"{SEGMENT_SEPARATOR}{index}"
    if len(result_id) + len(suffix) > MAX_ID_BYTES:
        result_id = "sha256-" + hashlib.sha256(result_id.encode()).hexdigest()
    return result_id + suffix


def documents(
    result_id: str,
    base: dict[str, Any],
    vector: list[float],
    segments: list[dict[str, Any]],
    segment_vectors: list[list[float]],
) -> dict[str, dict[str, Any]]:
    """Document id -> fields for one finished upload (pure; vectors as plain lists).

    ``base`` holds the fields every document of the upload carries (owner, path,
    generation, kind, modelId, modelSha); ``segments`` are the result's timeline entries,
    one per vector in ``segment_vectors``.
    """
    if len(segments) != len(segment_vectors):
        raise ValueError("one vector per segment")
    docs = {
        result_id: {
            **base,
            "whole": True,
            "searchable": not segments,
            "segmentCount": len(segments),
            "vector": vector,
        }
    }
    for index, (segment, seg_vector) in enumerate(zip(segments, segment_vectors, strict=True)):
        docs[segment_id(result_id, index)] = {
            **base,
            "whole": False,
            "searchable": True,
            "startSec": segment["startSec"],
            "endSec": segment["endSec"],
            "vector": seg_vector,
        }
    return docs


def stale_ids(result_id: str, previous_segments: int, kept: dict[str, Any]) -> list[str]:
    """Documents of the previous state that the new one does not overwrite (pure)."""
    ids = [result_id] + [segment_id(result_id, i) for i in range(previous_segments)]
    return [doc for doc in ids if doc not in kept]


def previous_segments(db: Any, collection: str, result_id: str) -> int:
    """How many segment documents the upload has now (from its whole document)."""
    snap = db.collection(collection).document(result_id).get()
    return int((snap.to_dict() or {}).get("segmentCount") or 0) if snap.exists else 0


def firestore_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with ``vector`` as a Firestore vector value (what ``find_nearest`` reads)."""
    from google.cloud.firestore_v1.vector import Vector

    return {**fields, "vector": Vector(fields["vector"])}


def nearest(
    db: Any,
    collection: str,
    vector: list[float],
    *,
    owner: str,
    model_sha: str,
    limit: int,
    whole: bool = False,
) -> list[tuple[str, Match]]:
    """The owner's ``limit`` nearest vectors of this model file, closest first.

    ``whole=True`` searches pictures and whole clips (near-duplicates); otherwise pictures
    and video segments (``searchable``), so a match inside a long video says where. Returns
    ``(document id, match)`` pairs; ``score`` is the cosine similarity.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter
    from google.cloud.firestore_v1.base_vector_query import DistanceMeasure
    from google.cloud.firestore_v1.vector import Vector

    query = (
        db.collection(collection)
        .where(filter=FieldFilter("owner", "==", owner))
        .where(filter=FieldFilter("modelSha", "==", model_sha))
    )
    if whole:
        query = query.where(filter=FieldFilter("whole", "==", True))
    else:
        query = query.where(filter=FieldFilter("searchable", "==", True))
    found = query.find_nearest(
        vector_field="vector",
        query_vector=Vector(vector),
        distance_measure=DistanceMeasure.COSINE,
        limit=limit,
        distance_result_field="distance",
    )
    matches = []
    for snap in found.stream():
        data = snap.to_dict() or {}
        matches.append(
            (
                snap.id,
                Match(
                    path=str(data.get("path")),
                    score=round(1.0 - float(data.get("distance") or 0.0), 6),
                    kind=str(data.get("kind")),
                    start_sec=data.get("startSec") if not data.get("whole") else None,
                    end_sec=data.get("endSec") if not data.get("whole") else None,
                ),
            )
        )
    return matches
