"""The refresh's checks that need no server: who may run it, what a task may name.

The fan-out itself runs through the Cloud Tasks emulator in
``tests/e2e/test_refresh_through_cloud_tasks.py``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

from media_classifier.api.refresh_admin import admin_request
from media_classifier.flows.refresh import (
    BATCHES,
    EXPIRE_AT,
    ID,
    RESUMABLE_FOR,
    UNCOUNTED_BATCH_TTL,
    RefreshOptions,
    RunExpired,
    _models_of,
    handle_task,
    resume,
    task_id,
)
from media_classifier.flows.upload import Flow

REPO = Path(__file__).resolve().parents[3]


class _Untouchable:
    """A database or queue that fails the test when used: refusals happen before I/O."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"touched the backend: {name}")


SETTINGS = RefreshOptions(
    flow=Flow(prefix="uploads/", collection="r", top_k=5, limits=None, model_for=str),
    collection="runs",
)


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        (None, FunctionsErrorCode.UNAUTHENTICATED),
        ({}, FunctionsErrorCode.PERMISSION_DENIED),
        ({"admin": "true"}, FunctionsErrorCode.PERMISSION_DENIED),  # a string is not true
        ({"admin": 1}, FunctionsErrorCode.PERMISSION_DENIED),
    ],
)
def test_only_an_admin_claim_that_is_true_gets_in(claims: Any, code: FunctionsErrorCode) -> None:
    with pytest.raises(HttpsError) as info:
        admin_request(
            {"action": "status", "run": "x"},
            claims,
            db=_Untouchable(),
            queue=_Untouchable(),
            settings=SETTINGS,
        )
    assert info.value.code == code


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"action": "delete"},
        {"action": "start", "under": "elsewhere/"},
        {"action": "start", "errors": "TIMEOUT"},
        {"action": "status", "run": "../mediaResults/x"},
        {"action": "status"},
    ],
)
def test_an_admin_request_is_checked_before_anything_is_touched(data: Any) -> None:
    with pytest.raises(HttpsError) as info:
        admin_request(
            data, {"admin": True}, db=_Untouchable(), queue=_Untouchable(), settings=SETTINGS
        )
    assert info.value.code == FunctionsErrorCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "data",
    [None, [], {"run": "a/b", "kind": "batch"}, {"run": "", "kind": "list"}, {"run": 3}],
)
def test_a_task_that_names_no_valid_run_is_ignored_without_io(data: Any) -> None:
    outcome = handle_task(data, db=_Untouchable(), queue=_Untouchable(), settings=SETTINGS)
    assert "ignored" in outcome


def test_task_names_use_only_what_cloud_tasks_allows() -> None:
    name = task_id("20261206T091617-a38ad1f9", "000001-0003", "r2")
    assert name == "20261206T091617-a38ad1f9-000001-0003-r2"
    assert task_id("a/b.c", "d e") == "a_b_c-d_e"
    assert ID.fullmatch("000001-0003") and not ID.fullmatch("a/b")


def test_the_ttl_policy_names_the_field_the_batches_carry() -> None:
    """firestore.indexes.json and the code agree on which documents expire by which field."""
    indexes = json.loads((REPO / "firestore.indexes.json").read_text())
    ttl = [o for o in indexes["fieldOverrides"] if o.get("ttl") is True]
    assert [(o["collectionGroup"], o["fieldPath"]) for o in ttl] == [(BATCHES, EXPIRE_AT)]


def test_a_run_records_the_models_its_batches_were_brought_to() -> None:
    refs = {"imagenet": {"id": "imagenet", "sha": "abc"}, "fashion": {"id": "fashion"}}

    def model_ref(model_id: str) -> dict[str, str]:
        return refs[model_id]  # KeyError: a route to a model no longer served

    def model_for(name: str) -> str:
        return name.split("/")[2] if name.count("/") > 2 else "imagenet"

    settings = replace(SETTINGS, flow=replace(SETTINGS.flow, model_for=model_for))
    settings = replace(settings, model_ref=model_ref)
    objects = [{"name": "uploads/u/a.jpg"}, {"name": "uploads/u/fashion/b.png"}]
    assert _models_of(objects, settings) == refs
    assert _models_of([{"name": "uploads/u/gone/c.png"}], settings) == {}
    assert _models_of(objects, SETTINGS) == {}  # no model reference: nothing recorded


def test_resume_refuses_a_run_older_than_its_batches_live() -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)

    class _Run:
        exists = True

        def to_dict(self) -> dict[str, Any]:
            return {"status": "cancelled", "startedAt": started}

    class _Db:
        def collection(self, name: str) -> Any:
            return self

        def document(self, name: str) -> Any:
            return self

        def get(self) -> _Run:
            return _Run()

        def update(self, fields: dict) -> None:
            raise AssertionError("an expired run is not touched")

    late = replace(SETTINGS, clock=lambda: started + RESUMABLE_FOR + timedelta(seconds=1))
    with pytest.raises(RunExpired):
        resume(_Db(), _Untouchable(), late, "run")
    assert timedelta(days=1) == UNCOUNTED_BATCH_TTL - RESUMABLE_FOR
