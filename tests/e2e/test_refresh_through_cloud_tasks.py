"""The refresh through the Cloud Tasks emulator: fan-out, retries, duplicates, cancel, counts.

The Functions emulator registers the task-queue function ``refreshTasks`` with the Cloud
Tasks emulator of firebase-tools (started with the functions, port 9499), which dispatches
the tasks that ``python -m media_classifier refresh start`` and the function itself enqueue
through firebase-admin, with the queue's retries and back-off. The uploads' results are
first damaged as a retrained model leaves them (written by another model file), then
refreshed; the run document's counts must add up.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from PIL import Image

from tests.e2e.conftest import RESULTS_COLLECTION, _auth_post, run_command
from tools.localstack import PROJECT_ID, default_bucket, result_doc_id

TASKS_HOST = "127.0.0.1:9499"
COUNT = 240  # 12 batches of 20
RUNS = "mediaRefreshRuns"
EMBEDDINGS = "mediaEmbeddings"
OLD_SHA = "0123456789ab"
TASK_URL = f"http://127.0.0.1:5001/{PROJECT_ID}/us-central1/refreshTasks"
ADMIN_URL = f"http://127.0.0.1:5001/{PROJECT_ID}/us-central1/refresh_admin"


@pytest.fixture(autouse=True)
def _tasks_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", TASKS_HOST)


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (i * 37 % 256, i * 91 % 256, i * 13 % 256)).save(buf, "PNG")
    return buf.getvalue()


def _refresh(*args: str) -> dict[str, Any]:
    return json.loads(run_command("refresh", *args).stdout.strip().splitlines()[-1])


def _wait_run(db: Any, run: str, accept: Callable[[dict], bool], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = db.collection(RUNS).document(run).get().to_dict() or {}
        if accept(doc):
            return doc
        time.sleep(0.5)
    pytest.fail(f"run {run} not as expected within {timeout} s: {json.dumps(doc, default=str)}")


def _adds_up(doc: dict[str, Any]) -> bool:
    handled = doc["done"] + doc["skipped"] + sum(doc["errors"].values())
    return handled == doc["listed"]


def _results(db: Any, names: list[str]) -> list[dict[str, Any]]:
    refs = [db.collection(RESULTS_COLLECTION).document(result_doc_id(n)) for n in names]
    found = {snap.reference.path: snap.to_dict() for snap in db.get_all(refs)}
    return [found.get(ref.path) for ref in refs]


def _age(db: Any, names: list[str]) -> None:
    """Make every result (and its vector) look written by an older file of the same model."""
    for first in range(0, len(names), 200):
        group = names[first : first + 200]
        batch = db.batch()
        for name, doc in zip(group, _results(db, group), strict=True):
            ref = db.collection(RESULTS_COLLECTION).document(result_doc_id(name))
            batch.update(ref, {"model": {**doc["model"], "sha": OLD_SHA}})
            batch.update(
                db.collection(EMBEDDINGS).document(result_doc_id(name)), {"modelSha": OLD_SHA}
            )
        batch.commit()


def _vector_shas(db: Any, names: list[str]) -> set[str]:
    refs = [db.collection(EMBEDDINGS).document(result_doc_id(n)) for n in names]
    return {(snap.to_dict() or {}).get("modelSha") for snap in db.get_all(refs)}


@pytest.fixture(scope="module")
def uploaded(run_id: str, storage_bucket: Any, firestore_db: Any) -> tuple[str, list[str]]:
    """240 small images, classified by the trigger: (folder, names). Shared by the tests:
    each first makes the results it needs outdated."""
    under = f"uploads/{run_id}/{run_id}/refresh/"
    names = [f"{under}img-{i:03d}.png" for i in range(COUNT)]
    for i, name in enumerate(names):
        storage_bucket.blob(name).upload_from_string(_png(i), content_type="image/png")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        docs = [d or {} for d in _results(firestore_db, names)]
        if all(d.get("status") == "done" for d in docs):
            break
        time.sleep(1)
    assert {d.get("status") for d in docs} == {"done"}, "the trigger did not classify them all"
    assert len({d["model"]["sha"] for d in docs}) == 1
    return under, names


def test_a_refresh_brings_every_result_of_an_older_model_file_up_to_date(
    uploaded, firestore_db
) -> None:
    under, names = uploaded
    current = _results(firestore_db, names[:1])[0]["model"]["sha"]
    _age(firestore_db, names)
    bucket = default_bucket().name

    run = _refresh("start", "--bucket", bucket, "--under", under)["run"]
    doc = _wait_run(firestore_db, run, lambda d: d.get("status") == "done")
    assert doc["listed"] == COUNT and doc["enqueued"] == 12  # batches of 20
    assert (doc["done"], doc["skipped"], doc["errors"]) == (COUNT, 0, {})
    assert doc["estimatedRemainingSec"] == 0 and doc["finishedAt"] and doc["listing"]["complete"]
    assert {r["model"]["sha"] for r in _results(firestore_db, names)} == {current}
    assert _vector_shas(firestore_db, names) == {current}  # the vectors are rewritten too
    # The run names the model file it brought the results to.
    assert [m["sha"] for m in doc["models"].values()] == [current]
    # Every counted batch expires 30 days after it was counted (the TTL policy's field).
    batches = list(firestore_db.collection(RUNS).document(run).collection("batches").stream())
    assert len(batches) == 12
    for batch in batches:
        left = (batch.to_dict()["expireAt"] - datetime.now(UTC)).total_seconds() / 86400
        assert 29.9 < left <= 30.0

    # A duplicate delivery of a batch task (as Cloud Tasks may send): nothing changes.
    before = _results(firestore_db, names[:20])
    body = {"data": {"run": run, "kind": "batch", "batch": "000000-0000"}}
    reply = requests.post(TASK_URL, json=body, timeout=60)
    assert reply.status_code == 200 and "ignored" in reply.json()["result"]  # the run is done
    assert _results(firestore_db, names[:20]) == before

    # Nothing outdated left: a second run classifies nothing.
    again = _refresh("start", "--bucket", bucket, "--under", under)["run"]
    doc = _wait_run(firestore_db, again, lambda d: d.get("status") == "done")
    assert (doc["listed"], doc["done"], doc["skipped"]) == (COUNT, 0, COUNT)


def test_failing_tasks_are_retried_without_double_work_and_duplicates_count_once(
    uploaded, firestore_db
) -> None:
    under, names = uploaded
    names = names[:40]
    _age(firestore_db, names)
    folder = under  # all are listed, 40 are outdated
    # Each delivery of a batch task dies after 7 objects; Cloud Tasks retries it (back-off
    # 10 s, 20 s, ...) and each retry starts after the last object recorded.
    args = ("--bucket", default_bucket().name, "--under", folder, "--fail-after", "7")
    run = _refresh("start", *args)["run"]
    _wait_run(firestore_db, run, lambda d: d.get("enqueued") == 12)
    # Extra deliveries of a running batch, straight to the function as Cloud Tasks posts.
    body = {"data": {"run": run, "kind": "batch", "batch": "000000-0000"}}
    for _ in range(2):
        reply = requests.post(TASK_URL, json=body, timeout=60)
        assert reply.status_code in (200, 500)  # 500: the injected failure, retried later
    doc = _wait_run(firestore_db, run, lambda d: d.get("status") == "done", timeout=400)
    assert doc["listed"] == COUNT and _adds_up(doc) and doc["errors"] == {}
    # Counted once each: a duplicate that met an object another delivery was processing
    # counts it skipped, never twice.
    assert doc["done"] <= 40 and doc["done"] + doc["skipped"] == COUNT
    assert all(r["model"]["sha"] != OLD_SHA for r in _results(firestore_db, uploaded[1]))


def test_cancel_stops_a_run_and_resume_finishes_it(uploaded, firestore_db) -> None:
    under, _ = uploaded
    bucket = default_bucket().name
    # Slowed down (each delivery dies after 3 objects, then backs off) so that the cancel
    # surely comes mid-run.
    args = ("--bucket", bucket, "--under", under, "--everything", "--fail-after", "3")
    run = _refresh("start", *args)["run"]
    _wait_run(firestore_db, run, lambda d: d.get("enqueued") == 12)
    time.sleep(3)  # the first deliveries do their 3 objects, then fail
    assert _refresh("cancel", run)["cancelled"] is True
    time.sleep(2)  # a delivery in flight finishes its object
    settled = firestore_db.collection(RUNS).document(run).get().to_dict()
    time.sleep(25)  # the retries (10 s, 20 s back-off) come, and do nothing
    still = firestore_db.collection(RUNS).document(run).get().to_dict()
    assert still["status"] == "cancelled" and still["updatedAt"] == settled["updatedAt"]
    recorded = sum(
        len((b.to_dict() or {}).get("outcomes") or {})
        for b in firestore_db.collection(RUNS).document(run).collection("batches").stream()
    )
    assert 3 <= recorded < COUNT and still["done"] == 0  # counted per finished batch

    # The test's own fault goes; resume re-enqueues the unfinished batches.
    firestore_db.collection(RUNS).document(run).update({"options.failAfter": None})
    assert _refresh("resume", run)["enqueued"] == 12  # no batch had finished
    doc = _wait_run(firestore_db, run, lambda d: d.get("status") == "done")
    assert doc["resumes"] == 1 and doc["listed"] == COUNT and _adds_up(doc)
    assert (doc["done"], doc["skipped"], doc["errors"]) == (COUNT, 0, {})  # each object once


def test_a_run_whose_batches_may_have_expired_is_not_resumed(uploaded, firestore_db) -> None:
    """Batches not counted live 90 days: resuming an older run would leave it stuck."""
    under, _ = uploaded
    args = ("--bucket", default_bucket().name, "--under", under, "--fail-after", "0")
    run = _refresh("start", *args)["run"]
    _wait_run(firestore_db, run, lambda d: d.get("enqueued") == 12)
    listed = firestore_db.collection(RUNS).document(run).collection("batches").stream()
    for batch in listed:  # listed, never counted: the resume window
        left = (batch.to_dict()["expireAt"] - datetime.now(UTC)).total_seconds() / 86400
        assert 89.9 < left <= 90.0
    assert _refresh("cancel", run)["cancelled"] is True
    old = datetime.now(UTC) - timedelta(days=89, hours=1)
    firestore_db.collection(RUNS).document(run).update({"startedAt": old})
    refused = run_command("refresh", "resume", run, check=False)
    assert refused.returncode == 1 and "expired" in refused.stdout
    assert firestore_db.collection(RUNS).document(run).get().to_dict()["status"] == "cancelled"


def _call(data: dict[str, Any], token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{ADMIN_URL}", json={"data": data}, headers=headers, timeout=60)


def test_only_admins_start_and_watch_a_refresh_through_the_callable(
    run_id: str, id_token, firestore_db
) -> None:
    admin, user = f"admin-{run_id}", f"user-{run_id}"
    plain = id_token(user)
    id_token(admin)
    _auth_post(
        f"projects/{PROJECT_ID}/accounts:update",
        {"localId": admin, "customAttributes": json.dumps({"admin": True})},
        admin=True,
    )
    token = id_token(admin)  # signed in again: the token carries the claim
    start = {"action": "start", "under": f"uploads/{run_id}/empty/"}

    assert _call(start, None).json()["error"]["status"] == "UNAUTHENTICATED"
    assert _call(start, plain).json()["error"]["status"] == "PERMISSION_DENIED"
    outside = _call({**start, "under": "elsewhere/"}, token).json()["error"]["status"]
    assert outside == "INVALID_ARGUMENT"

    run = _call(start, token).json()["result"]["run"]
    _wait_run(firestore_db, run, lambda d: d.get("status") == "done")  # nothing to list
    progress = _call({"action": "status", "run": run}, token).json()["result"]["progress"]
    assert progress["status"] == "done" and progress["listed"] == 0
    assert _call({"action": "status", "run": run}, plain).status_code == 403
    assert _call({"action": "cancel", "run": run}, token).json()["result"]["cancelled"] is False
