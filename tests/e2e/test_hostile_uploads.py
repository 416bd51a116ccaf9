"""The whole hostile corpus uploaded through the Storage emulator, end to end.

Why end to end as well as through ``classify_bytes``: names with ``#``, ``%``, unicode
or 1,024 bytes, empty objects and folder placeholders travel through Storage, the
event, the download and the document id; a crash anywhere on that path leaves an
app waiting forever. Each file must end in exactly the corpus's outcome, every
document must be there, and objects outside the prefix must get none.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from media_classifier.store.results import TERMINAL as FINAL_STATUSES
from media_classifier.store.results import doc_id as result_doc_id
from tools.hostile_corpus import DONE, HostileFile, corpus
from tools.loadtest import LOST_HINT

RESULTS_COLLECTION = "mediaResults"  # the param's default, which the local stack uses

#: All events are delivered concurrently; the emulator runs them a few at a time.
DRAIN_SECONDS = 240.0
STALL_SECONDS = 90.0
UPLOAD_THREADS = 8


def _poll_terminal(
    db: Any, names: list[str], timeout: float, stall: float = STALL_SECONDS
) -> dict[str, dict[str, Any]]:
    """Documents that reached done/error, polling until all have, time runs out, or
    nothing new arrived for ``stall`` seconds (a lost event never arrives)."""
    found: dict[str, dict[str, Any]] = {}
    collection = db.collection(RESULTS_COLLECTION)
    deadline = time.monotonic() + timeout
    last_progress = time.monotonic()
    while time.monotonic() < min(deadline, last_progress + stall) and len(found) < len(names):
        for name in names:
            if name in found:
                continue
            snap = collection.document(result_doc_id(name)).get()
            doc = snap.to_dict() if snap.exists else None
            if doc and doc.get("status") in FINAL_STATUSES:
                found[name] = doc
                last_progress = time.monotonic()
        if len(found) < len(names):
            time.sleep(1.0)
    return found


@pytest.mark.slow
def test_every_hostile_upload_ends_in_its_expected_document(
    storage_bucket: Any, firestore_db: Any, run_id: str
) -> None:
    files = corpus(uid=run_id, run="hostile")
    watched = [f for f in files if not f.ignored]
    ignored = [f for f in files if f.ignored]

    def put(item: HostileFile) -> None:
        storage_bucket.blob(item.name).upload_from_string(item.data, content_type=item.content_type)

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(pool.map(put, files))  # re-raises the first failed upload

    docs = _poll_terminal(firestore_db, [f.name for f in watched], DRAIN_SECONDS)
    missing = [f.slug for f in watched if f.name not in docs]
    assert not missing, f"no terminal document for {missing}\n{LOST_HINT}"

    wrong = {}
    for item in watched:
        doc = docs[item.name]
        outcome = DONE if doc["status"] == DONE else (doc.get("error") or {}).get("code")
        if outcome != item.expect:
            wrong[item.slug] = f"expected {item.expect}, got {outcome}: {doc.get('error')}"
            continue
        assert doc["path"] == item.name and doc["owner"] == run_id, item.slug
        if outcome == DONE:
            assert doc["labels"] and doc["kind"] in ("image", "video"), item.slug
        else:
            assert doc["labels"] == [] and doc["error"]["message"], item.slug
    assert not wrong, wrong

    # Every watched event has been handled, so the ignored ones had their chance too.
    time.sleep(2)
    collection = firestore_db.collection(RESULTS_COLLECTION)
    written = [f.slug for f in ignored if collection.document(result_doc_id(f.name)).get().exists]
    assert not written, f"documents were written for ignored objects: {written}"
