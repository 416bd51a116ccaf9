"""The vector documents' layout: ids derived from the result's, one per segment, stale ones."""

from __future__ import annotations

import pytest

from media_classifier.store.embeddings import (
    SEGMENT_SEPARATOR,
    Match,
    documents,
    segment_id,
    stale_ids,
)
from media_classifier.store.results import MAX_ID_BYTES, doc_id

BASE = {"owner": "u1", "path": "uploads/u1/a.mp4", "generation": "7", "kind": "video"}
SEGMENTS = [{"startSec": 0.0, "endSec": 2.0}, {"startSec": 2.0, "endSec": 4.0}]


def test_a_picture_is_one_searchable_document_under_its_result_id() -> None:
    docs = documents("uploads%2Fu1%2Fa.jpg", {**BASE, "kind": "image"}, [1.0, 0.0], [], [])
    assert list(docs) == ["uploads%2Fu1%2Fa.jpg"]
    (doc,) = docs.values()
    assert doc["whole"] is True and doc["searchable"] is True and doc["segmentCount"] == 0


def test_a_video_is_searched_by_segment_and_compared_whole() -> None:
    docs = documents("v", BASE, [1.0, 0.0], SEGMENTS, [[0.0, 1.0], [1.0, 0.0]])
    assert list(docs) == ["v", f"v{SEGMENT_SEPARATOR}0", f"v{SEGMENT_SEPARATOR}1"]
    assert docs["v"]["searchable"] is False and docs["v"]["segmentCount"] == 2
    second = docs[f"v{SEGMENT_SEPARATOR}1"]
    assert second["whole"] is False and second["searchable"] is True
    assert (second["startSec"], second["endSec"], second["vector"]) == (2.0, 4.0, [1.0, 0.0])


def test_one_vector_per_segment_is_required() -> None:
    with pytest.raises(ValueError):
        documents("v", BASE, [1.0], SEGMENTS, [[1.0]])


def test_segment_ids_never_collide_with_another_uploads_result_id() -> None:
    """encodeURIComponent never leaves the separator, so no object's id looks like one."""
    assert SEGMENT_SEPARATOR not in doc_id("uploads/u1/a#0 ~!*'()")
    assert segment_id(doc_id("uploads/u1/a"), 0) != doc_id("uploads/u1/a#0")


def test_segment_ids_of_the_longest_names_stay_within_firestores_limit() -> None:
    longest = doc_id("uploads/u/" + "é" * 500)
    assert len(segment_id(longest, 599)) <= MAX_ID_BYTES


def test_a_shorter_timeline_deletes_the_segments_it_no_longer_has() -> None:
    kept = documents("v", BASE, [1.0], SEGMENTS[:1], [[1.0]])
    assert stale_ids("v", 3, kept) == [f"v{SEGMENT_SEPARATOR}1", f"v{SEGMENT_SEPARATOR}2"]
    assert stale_ids("v", 2, {}) == ["v", f"v{SEGMENT_SEPARATOR}0", f"v{SEGMENT_SEPARATOR}1"]


def test_a_match_says_where_in_a_video_only_for_segments() -> None:
    assert Match("p", 0.9, "image").as_dict() == {"path": "p", "score": 0.9, "kind": "image"}
    segment = Match("v", 0.8, "video", 2.0, 4.0).as_dict()
    assert (segment["startSec"], segment["endSec"]) == (2.0, 4.0)
