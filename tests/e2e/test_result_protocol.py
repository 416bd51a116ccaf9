"""The result protocol's preconditions, against the Firestore emulator.

Two workers can hold one document's claim in turn: the first stalls past
``STALE_CLAIM`` (a frozen instance, a long garbage collection), the second takes the
claim over. The first must then be unable to write anything, neither its result nor
its per-frame detail, however late it wakes. These are the writes that
``update_time`` preconditions guard (Google's Firestore emulator enforces them for a
whole commit, as Firestore does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from media_classifier.store import results
from tests.e2e.conftest import RESULTS_COLLECTION

FIELDS = {"bucket": "b", "path": "p", "owner": None, "size": 1}
LONG_AGO = results.STALE_CLAIM + timedelta(minutes=5)


def test_a_worker_whose_claim_was_taken_over_writes_nothing(object_name, firestore_db) -> None:
    name = object_name("slow.mp4")
    ref = firestore_db.collection(RESULTS_COLLECTION).document(results.doc_id(name))
    first = results.claim(firestore_db, RESULTS_COLLECTION, name, 7, FIELDS)
    assert isinstance(first, results.Claim)
    assert ref.get().to_dict()["attempts"] == 1

    ref.update({"updatedAt": datetime.now(UTC) - LONG_AGO})  # the first worker stalls
    second = results.claim(firestore_db, RESULTS_COLLECTION, name, 7, FIELDS)
    assert isinstance(second, results.Claim)
    assert ref.get().to_dict()["attempts"] == 2

    late = {"status": "done", "labels": [{"label": "late", "score": 1.0}], "video": {}}
    frames = [{"t": 0.0, "top": [{"label": "late", "score": 1.0}]}]
    assert not results.finish(firestore_db, first, late, frames)
    assert ref.get().to_dict()["status"] == "processing"
    chunks = ref.collection(results.FRAMES_SUBCOLLECTION).document(results.chunk_id(0))
    assert not chunks.get().exists  # the whole commit was refused, not only the document

    mine = {"status": "done", "labels": [{"label": "mine", "score": 1.0}], "video": None}
    assert results.finish(firestore_db, second, mine)
    assert ref.get().to_dict()["labels"] == [{"label": "mine", "score": 1.0}]


def test_a_new_generation_shows_nothing_of_the_previous_result(object_name, firestore_db) -> None:
    """While a re-upload is processed, its document holds none of the old file's answer:
    not its labels, error, video, duplicate, timings, nor the model that produced them."""
    name = object_name("again.jpg")
    ref = firestore_db.collection(RESULTS_COLLECTION).document(results.doc_id(name))
    old = results.claim(firestore_db, RESULTS_COLLECTION, name, 1, FIELDS)
    answer = {
        "status": "done",
        "labels": [{"label": "old", "score": 1.0}],
        "model": {"id": "m", "name": "m", "version": "1", "sha": "abc"},
        "duplicateOf": "uploads/u/other.jpg",
        "timings": {"total": 5.0},
    }
    assert results.finish(firestore_db, old, answer)
    assert isinstance(
        results.claim(firestore_db, RESULTS_COLLECTION, name, 2, FIELDS), results.Claim
    )
    doc = ref.get().to_dict()
    assert doc["status"] == "processing" and doc["generation"] == "2"
    stale = ("labels", "error", "video", "duplicateOf", "model", "timings")
    assert [k for k in stale if doc[k]] == [], doc  # [], None or {}: nothing of generation 1


def test_an_event_cannot_take_a_live_claim(object_name, firestore_db) -> None:
    name = object_name("busy.jpg")
    assert isinstance(
        results.claim(firestore_db, RESULTS_COLLECTION, name, 3, FIELDS), results.Claim
    )
    again = results.claim(firestore_db, RESULTS_COLLECTION, name, 3, FIELDS)
    assert isinstance(again, results.Decision) and not again.claim


def _video_result(firestore_db, name: str, chunks: int) -> Any:
    """A finished video result of generation 1 with ``chunks`` frame chunks; its ref."""
    old = results.claim(firestore_db, RESULTS_COLLECTION, name, 1, FIELDS)
    count = results.FRAMES_PER_CHUNK * (chunks - 1) + 1
    frames = [{"t": float(i), "top": []} for i in range(count)]
    assert results.finish(firestore_db, old, {"status": "done", "video": {}}, frames)
    ref = firestore_db.collection(RESULTS_COLLECTION).document(results.doc_id(name))
    assert len(list(ref.collection(results.FRAMES_SUBCOLLECTION).stream())) == chunks
    return ref


def test_taking_over_a_dead_claim_still_removes_the_old_videos_frames(
    object_name, firestore_db
) -> None:
    """A re-uploaded video's worker dies: its successor must not leave the old frames."""
    name = object_name("reuploaded.mp4")
    ref = _video_result(firestore_db, name, chunks=3)
    chunks = ref.collection(results.FRAMES_SUBCOLLECTION)

    results.claim(firestore_db, RESULTS_COLLECTION, name, 2, FIELDS)  # then dies
    ref.update({"updatedAt": datetime.now(UTC) - LONG_AGO})
    successor = results.claim(firestore_db, RESULTS_COLLECTION, name, 2, FIELDS)
    assert isinstance(successor, results.Claim) and successor.previous_chunks == 3

    assert results.finish(firestore_db, successor, {"status": "done", "video": None})
    assert list(chunks.stream()) == []


def test_deleting_an_object_while_its_new_generation_is_processed_removes_all_frames(
    object_name, firestore_db
) -> None:
    name = object_name("deleted-while-busy.mp4")
    ref = _video_result(firestore_db, name, chunks=2)
    results.claim(firestore_db, RESULTS_COLLECTION, name, 2, FIELDS)  # a re-upload, in work

    assert results.delete_result(firestore_db, RESULTS_COLLECTION, name, 2)
    assert not ref.get().exists
    assert list(ref.collection(results.FRAMES_SUBCOLLECTION).stream()) == []
