"""Recovery of uploads whose worker died, against the emulators.

A worker that dies after its claim (out of memory, a crash, the time limit) leaves the
document ``processing``, and Storage triggers are never retried. The test uploads real
files through the Storage emulator, lets the real trigger finish them, then puts their
documents back into the state a dead worker leaves: ``processing``, last touched long
ago, taken by one worker (retried) or by two (given up). A live claim and a finished
result stay untouched. Recovery runs twice: as the command an operator runs, and as the
scheduled function ``recover_interrupted``, run by the Functions emulator as Cloud
Scheduler runs it (a POST to its URL; the emulator loads it with Pub/Sub beside it).
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from media_classifier import config
from media_classifier.flows import recovery
from media_classifier.flows.upload import Flow
from media_classifier.store import results
from media_classifier.store.results import STALE_CLAIM
from tests.e2e.conftest import RESULTS_COLLECTION, run_command
from tools.localstack import HOST, PORTS, PROJECT_ID, LocalStack, result_doc_id

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"
SAMPLES = REPO / "samples" / "images"
COFFEE = {"espresso", "cup", "coffee mug"}
LONG_AGO = STALE_CLAIM + timedelta(minutes=5)


def _die(ref: Any, attempts: int, *, ago: timedelta = LONG_AGO) -> None:
    """Leave the document as a worker that claimed it and died ``ago`` leaves it."""
    ref.update(
        {
            "status": "processing",
            "labels": [],
            "attempts": attempts,
            "updatedAt": datetime.now(UTC) - ago,
        }
    )


def _recover_command() -> dict[str, Any]:
    proc = run_command("recover")
    assert '"event": "recovery_finished"' in proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _uploaded(names: dict[str, str], upload: Any, wait_for_result: Any) -> dict[str, Any]:
    coffee = (SAMPLES / "coffee.jpg").read_bytes()
    for name in names.values():
        upload(name, coffee, "image/jpeg")
    first = {key: wait_for_result(name) for key, name in names.items()}
    assert all(doc["status"] == "done" and doc["attempts"] == 1 for doc in first.values())
    return first


def _dead_pair(object_name, upload, wait_for_result, firestore_db) -> dict[str, Any]:
    """Two uploads whose workers died: ``died`` once, ``died-again`` twice."""
    names = {key: object_name(f"{key}.jpg") for key in ("died", "died-again")}
    _uploaded(names, upload, wait_for_result)
    refs = {
        key: firestore_db.collection(RESULTS_COLLECTION).document(result_doc_id(name))
        for key, name in names.items()
    }
    _die(refs["died"], attempts=1)
    _die(refs["died-again"], attempts=2)
    return refs


def test_recover_command_retries_once_then_gives_up(
    object_name, upload, wait_for_result, firestore_db
) -> None:
    names = {key: object_name(f"{key}.jpg") for key in ("died-once", "died-twice", "live", "fine")}
    first = _uploaded(names, upload, wait_for_result)

    def ref(key: str) -> Any:
        return firestore_db.collection(RESULTS_COLLECTION).document(result_doc_id(names[key]))

    _die(ref("died-once"), attempts=1)
    _die(ref("died-twice"), attempts=2)
    _die(ref("live"), attempts=1, ago=timedelta(minutes=1))  # its worker is still busy

    # A dry run names both, with what a run would do, and writes nothing.
    proc = run_command("recover", "--dry-run")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    planned = {line["path"]: line["step"] for line in lines[:-1]}
    assert planned[names["died-once"]] == "retry"
    assert planned[names["died-twice"]] == "give up"
    assert names["live"] not in planned and lines[-1]["dryRun"]
    assert ref("died-once").get().to_dict()["status"] == "processing"

    summary = _recover_command()
    assert summary["stale"] >= 2 and summary["retried"] >= 1 and summary["gave up"] >= 1

    after = {key: ref(key).get().to_dict() for key in names}
    retried = after["died-once"]
    assert retried["status"] == "done" and retried["labels"][0]["label"] in COFFEE
    assert retried["attempts"] == 2 and retried["error"] is None
    assert retried["generation"] == first["died-once"]["generation"]
    given_up = after["died-twice"]
    assert given_up["status"] == "error" and given_up["labels"] == []
    assert given_up["error"]["code"] == "INTERRUPTED" and "2 times" in given_up["error"]["message"]
    assert given_up["attempts"] == 2
    assert after["live"]["status"] == "processing"  # not stale: left to its worker
    assert after["fine"]["updatedAt"] == first["fine"]["updatedAt"]

    # Both are terminal now: a second run finds nothing of theirs to do.
    _recover_command()
    assert {key: ref(key).get().to_dict()["updatedAt"] for key in ("died-once", "died-twice")} == {
        key: after[key]["updatedAt"] for key in ("died-once", "died-twice")
    }


def _scheduled_function_url(stack: LocalStack | None) -> str:
    """Where the Functions emulator serves ``recover_interrupted`` (skips if it does not).

    It loads scheduled functions only with the Pub/Sub emulator beside it, and never
    ticks Python ones: a POST to that URL is how a test (or Cloud Scheduler) runs one.
    """
    if stack is not None and "pubsub" not in stack.emulators:
        pytest.skip("no Pub/Sub emulator (google-cloud-cli-pubsub-emulator): not loaded")
    url = f"http://{HOST}:{PORTS['functions']}/{PROJECT_ID}/us-central1/recover_interrupted-0"
    return url


def test_the_scheduled_function_runs_the_same_recovery_in_the_functions_emulator(
    object_name, upload, wait_for_result, firestore_db, stack
) -> None:
    url = _scheduled_function_url(stack)
    refs = _dead_pair(object_name, upload, wait_for_result, firestore_db)

    request = urllib.request.Request(
        url,
        data=b"{}",
        headers={
            "Content-Type": "application/json",
            "X-CloudScheduler-JobName": "firebase-schedule-recover_interrupted-us-central1",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=240) as response:  # the sweep runs inside
        assert response.status == 200

    died, died_again = (refs[key].get().to_dict() for key in ("died", "died-again"))
    assert died["status"] == "done" and died["labels"][0]["label"] in COFFEE
    assert died["attempts"] == 2
    assert died_again["status"] == "error" and died_again["error"]["code"] == "INTERRUPTED"


def test_a_run_out_of_time_defers_retries_but_still_gives_up(
    object_name, upload, wait_for_result, firestore_db
) -> None:
    refs = _dead_pair(object_name, upload, wait_for_result, firestore_db)
    # Not a claim the flow wrote (no bucket, no path): left alone, never guessed at.
    junk = firestore_db.collection(RESULTS_COLLECTION).document(
        result_doc_id(object_name("junk.jpg"))
    )
    junk.set({"status": "processing", "attempts": 1, "updatedAt": datetime.now(UTC) - LONG_AGO})

    # A budget spent before the first retry.
    summary = recovery.sweep(firestore_db, recovery.RecoveryOptions(config.flow(), budget_s=-1.0))

    assert summary["deferred"] >= 1 and summary["gave up"] >= 1 and summary["skipped"] >= 1
    assert refs["died"].get().to_dict()["status"] == "processing"  # the next run's
    assert refs["died-again"].get().to_dict()["error"]["code"] == "INTERRUPTED"
    assert junk.get().to_dict()["status"] == "processing"
    junk.delete()  # so that later runs on a reused stack do not count it


def test_one_document_that_fails_does_not_stop_the_others(
    object_name, upload, wait_for_result, firestore_db
) -> None:
    names = {key: object_name(f"{key}.jpg") for key in ("breaks", "fine")}
    _uploaded(names, upload, wait_for_result)
    refs = {
        key: firestore_db.collection(RESULTS_COLLECTION).document(result_doc_id(name))
        for key, name in names.items()
    }
    _die(refs["breaks"], attempts=1, ago=LONG_AGO + timedelta(minutes=1))  # the oldest
    _die(refs["fine"], attempts=1)
    deployed = config.flow()

    def model_for(path: str) -> str:
        if path == names["breaks"]:
            raise RuntimeError("a bug that only this document reaches")
        return deployed.model_for(path)

    flow = Flow(deployed.prefix, deployed.collection, deployed.top_k, deployed.limits, model_for)
    summary = recovery.sweep(firestore_db, recovery.RecoveryOptions(flow))

    assert summary["failed"] >= 1 and summary["retried"] >= 1
    assert refs["breaks"].get().to_dict()["status"] == "processing"  # the next run tries again
    assert refs["fine"].get().to_dict()["status"] == "done"


def test_a_claim_revived_after_it_was_read_is_not_given_up(object_name, firestore_db) -> None:
    ref = firestore_db.collection(RESULTS_COLLECTION).document(
        result_doc_id(object_name("revived.jpg"))
    )
    ref.set({"status": "processing", "attempts": 2, "updatedAt": datetime.now(UTC) - LONG_AGO})
    (snap,) = [
        s
        for s in results.stale_claims(firestore_db, RESULTS_COLLECTION, datetime.now(UTC), 500)
        if s.id == ref.id
    ]
    ref.update({"updatedAt": datetime.now(UTC)})  # its worker was alive after all

    assert not results.abandon(firestore_db, snap, {"status": "error"})
    assert ref.get().to_dict()["status"] == "processing"
