"""At-least-once delivery, out-of-order generations, re-uploads and deletions, end to end.

Duplicate and stale events are posted straight to the Functions emulator's multicast
endpoint, exactly as Eventarc would redeliver them; the real Storage emulator provides
the objects and the real trigger the first delivery.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "images"
PROJECT = "demo-media-classifier"
MULTICAST = f"http://127.0.0.1:5001/functions/projects/{PROJECT}/trigger_multicast"
FINALIZED = "google.cloud.storage.object.v1.finalized"
DELETED = "google.cloud.storage.object.v1.deleted"


def _event(kind: str, bucket: str, name: str, generation: int, size: int, ctype: str) -> dict:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "type": kind,
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "subject": f"objects/{name}",
        "time": now,
        "datacontenttype": "application/json",
        "data": {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{generation}",
            "bucket": bucket,
            "name": name,
            "generation": str(generation),
            "metageneration": "1",
            "size": str(size),
            "contentType": ctype,
            "storageClass": "STANDARD",
            "timeCreated": now,
            "updated": now,
        },
    }


def post(event: dict) -> None:
    request = urllib.request.Request(
        MULTICAST,
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/cloudevents+json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status < 300


def _doc(firestore_db, name: str):
    from media_classifier.store.results import doc_id

    return firestore_db.collection("mediaResults").document(doc_id(name)).get()


def _started_count(stack, name: str) -> int | None:
    """How many deliveries began inference for ``name`` (from the emulator log)."""
    log = getattr(stack, "firebase_log", None)
    if log is None or not Path(log).exists():
        return None
    needle = json.dumps(name)[1:-1]
    return sum(
        1
        for line in Path(log).read_text(errors="replace").splitlines()
        if '"event": "started"' in line and needle in line
    )


def _settle(seconds: float = 4.0) -> None:
    """Give redelivered events time to run (the emulator runs them asynchronously)."""
    time.sleep(seconds)


@pytest.fixture
def name() -> str:
    return f"uploads/e2e-{uuid.uuid4().hex[:8]}/event-{uuid.uuid4().hex[:6]}.jpg"


def test_three_deliveries_give_one_inference_and_one_document(
    stack, storage_bucket, upload, wait_for_result, firestore_db, name
) -> None:
    data = (SAMPLES / "coffee.jpg").read_bytes()
    generation = upload(name, data, "image/jpeg")
    first = wait_for_result(name)
    before = _doc(firestore_db, name).update_time
    event = _event(FINALIZED, storage_bucket.name, name, generation, len(data), "image/jpeg")
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(post, [event, event, event]))
    _settle()
    after = _doc(firestore_db, name)
    assert after.update_time == before, "a redelivery rewrote the result"
    assert after.to_dict()["labels"] == first["labels"]
    started = _started_count(stack, name)
    if started is not None:
        assert started == 1


def test_concurrent_first_deliveries_race_safely(
    stack, storage_bucket, upload, wait_for_result, firestore_db, name
) -> None:
    data = (SAMPLES / "rocket.jpg").read_bytes()
    generation = upload(name, data, "image/jpeg")  # the real trigger fires too
    event = _event(FINALIZED, storage_bucket.name, name, generation, len(data), "image/jpeg")
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(post, [event, event, event]))
    doc = wait_for_result(name)
    _settle()
    assert doc["status"] == "done"
    assert _doc(firestore_db, name).to_dict()["generation"] == str(generation)
    started = _started_count(stack, name)
    if started is not None:
        assert started == 1


def test_reupload_replaces_and_old_generation_never_overwrites(
    storage_bucket, upload, wait_for_result, firestore_db, name
) -> None:
    old_data = (SAMPLES / "coffee.jpg").read_bytes()
    old_gen = upload(name, old_data, "image/jpeg")
    assert wait_for_result(name)["labels"][0]["label"] in {"espresso", "cup", "coffee mug"}
    new_gen = upload(name, b"now it is text", "text/plain")
    assert new_gen > old_gen
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = _doc(firestore_db, name).to_dict()
        if doc["generation"] == str(new_gen) and doc["status"] in ("done", "error"):
            break
        time.sleep(0.3)
    assert doc["generation"] == str(new_gen)
    assert doc["status"] == "error" and doc["error"]["code"] == "UNSUPPORTED_MEDIA"
    assert doc["labels"] == []
    # A late redelivery of the first generation changes nothing.
    before = _doc(firestore_db, name).update_time
    post(_event(FINALIZED, storage_bucket.name, name, old_gen, len(old_data), "image/jpeg"))
    _settle()
    after = _doc(firestore_db, name)
    assert after.update_time == before
    assert after.to_dict()["generation"] == str(new_gen)


def test_deleting_the_object_deletes_its_result(
    storage_bucket, upload, wait_for_result, firestore_db, name
) -> None:
    upload(name, (SAMPLES / "coffee.jpg").read_bytes(), "image/jpeg")
    wait_for_result(name)
    storage_bucket.blob(name).delete()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _doc(firestore_db, name).exists:
        time.sleep(0.3)
    assert not _doc(firestore_db, name).exists


def test_stale_delete_event_keeps_the_newer_result(
    storage_bucket, upload, wait_for_result, firestore_db, name
) -> None:
    data = (SAMPLES / "coffee.jpg").read_bytes()
    old_gen = upload(name, data, "image/jpeg")
    wait_for_result(name)
    new_gen = upload(name, data, "image/jpeg")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = _doc(firestore_db, name).to_dict()
        if doc["generation"] == str(new_gen) and doc["status"] == "done":
            break
        time.sleep(0.3)
    post(_event(DELETED, storage_bucket.name, name, old_gen, len(data), "image/jpeg"))
    _settle()
    doc = _doc(firestore_db, name)
    assert doc.exists and doc.to_dict()["generation"] == str(new_gen)
