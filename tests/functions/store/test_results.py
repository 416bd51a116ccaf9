"""Pure parts of the result protocol: ids and the idempotency decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from media_classifier.store.results import (
    STALE_CLAIM,
    chunk_id,
    decide,
    doc_id,
    frame_chunks,
    is_stale,
    next_attempt,
)

NOW = datetime(2026, 11, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("uploads/u1/cat.jpg", "uploads%2Fu1%2Fcat.jpg"),
        ("uploads/u1/my photo.jpg", "uploads%2Fu1%2Fmy%20photo.jpg"),
        ("uploads/u1/ünï€.png", "uploads%2Fu1%2F%C3%BCn%C3%AF%E2%82%AC.png"),
        ("uploads/u1/!*'()~-_.x", "uploads%2Fu1%2F!*'()~-_.x"),
        (
            "uploads/u1/100%#?&=+,;:@$.jpg",
            "uploads%2Fu1%2F100%25%23%3F%26%3D%2B%2C%3B%3A%40%24.jpg",
        ),
    ],
)
def test_doc_id_is_encode_uri_component(name: str, expected: str) -> None:
    # Expected values are what JavaScript's encodeURIComponent returns.
    assert doc_id(name) == expected
    assert "/" not in doc_id(name)


def test_names_too_long_for_an_id_fall_back_to_a_hash() -> None:
    name = "uploads/u1/" + "写真" * 300  # legal (< 1024 bytes) but ~5,400 bytes encoded
    ident = doc_id(name)
    assert ident.startswith("sha256-") and len(ident) == 7 + 64
    assert ident == doc_id(name)  # deterministic
    fits = "uploads/u1/" + "a" * 1000
    assert doc_id(fits) == fits.replace("/", "%2F")


def test_first_event_claims() -> None:
    assert decide(None, 5, NOW).claim


def test_older_generation_never_overwrites() -> None:
    assert not decide({"generation": "7", "status": "done"}, 5, NOW).claim
    assert not decide({"generation": "7", "status": "processing", "updatedAt": NOW}, 5, NOW).claim


def test_newer_generation_replaces() -> None:
    assert decide({"generation": "5", "status": "done"}, 7, NOW).claim
    assert decide({"generation": "5", "status": "processing", "updatedAt": NOW}, 7, NOW).claim


@pytest.mark.parametrize("status", ["done", "error"])
def test_redelivery_of_a_finished_generation_is_skipped(status: str) -> None:
    decision = decide({"generation": "5", "status": status}, 5, NOW)
    assert not decision.claim and status in decision.reason


def test_redelivery_during_processing_waits_unless_stale() -> None:
    fresh = {"generation": "5", "status": "processing", "updatedAt": NOW - timedelta(minutes=1)}
    stale = {"generation": "5", "status": "processing", "updatedAt": NOW - timedelta(hours=1)}
    assert not decide(fresh, 5, NOW).claim
    assert decide(stale, 5, NOW).claim


def test_frame_chunks() -> None:
    frames = [{"t": i} for i in range(1201)]
    chunks = frame_chunks(frames)
    assert [len(c) for c in chunks] == [500, 500, 201]
    assert frame_chunks([]) == []
    assert chunk_id(2) == "chunk-002"


def test_a_claim_is_stale_only_when_processing_and_untouched_for_long() -> None:
    fresh = NOW - STALE_CLAIM + timedelta(seconds=1)
    old = NOW - STALE_CLAIM - timedelta(seconds=1)
    assert not is_stale({"status": "processing", "updatedAt": fresh}, NOW)
    assert is_stale({"status": "processing", "updatedAt": old}, NOW)
    assert is_stale({"status": "processing"}, NOW)  # no readable time: cannot be shown alive
    assert not is_stale({"status": "done", "updatedAt": old}, NOW)
    assert not is_stale({"status": "error"}, NOW)


def test_attempts_count_the_workers_of_one_generation() -> None:
    assert next_attempt(None, 5) == 1
    processing = {"status": "processing", "generation": "5", "attempts": 1}
    assert next_attempt(processing, 5) == 2  # its worker died: the next one is the 2nd
    assert next_attempt({**processing, "attempts": 2}, 5) == 3
    assert next_attempt({"status": "processing", "generation": "5"}, 5) == 2  # older docs
    assert next_attempt(processing, 6) == 1  # a re-upload starts again
    assert next_attempt({**processing, "status": "done"}, 5) == 1  # a backfill redo
