"""The refresh's checks that need no server: who may run it, what a task may name.

The fan-out itself runs through the Cloud Tasks emulator in
``tests/e2e/test_refresh_through_cloud_tasks.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

from media_classifier.api.refresh_admin import admin_request
from media_classifier.flows.refresh import ID, RefreshOptions, handle_task, task_id
from media_classifier.flows.upload import Flow


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
