"""Pure parts of recovery: when a stale claim is retried, when it is given up."""

from __future__ import annotations

import pytest

from media_classifier.errors import ErrorCode
from media_classifier.flows.recovery import (
    INTERRUPTED_MESSAGE,
    MAX_ATTEMPTS,
    next_step,
    plan,
    upload_of_result,
)
from media_classifier.store.uploads import Upload


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(None, "retry"), (1, "retry"), (MAX_ATTEMPTS, "give up"), (MAX_ATTEMPTS + 3, "give up")],
)
def test_a_claim_is_retried_once_then_given_up(attempts: int | None, expected: str) -> None:
    assert MAX_ATTEMPTS == 2  # the event's worker and one retry: the README says so
    assert next_step({"status": "processing", "attempts": attempts}) == expected


def test_an_attempts_value_this_code_did_not_write_is_never_retried() -> None:
    assert next_step({"attempts": "many"}) == "give up"
    assert next_step({"attempts": [1]}) == "give up"


def test_the_plan_skips_what_the_flow_did_not_write() -> None:
    claim = {"bucket": "b", "path": "uploads/u1/x.jpg", "generation": "7", "attempts": 1}
    assert plan(claim, "uploads/") == (Upload("b", "uploads/u1/x.jpg", 7, 0, None), "retry")
    assert plan({**claim, "attempts": 2}, "uploads/")[1] == "give up"
    assert plan(claim, "incoming/") == (None, "skip")  # the prefix changed since
    assert plan({"status": "processing"}, "uploads/") == (None, "skip")


def test_the_upload_is_rebuilt_from_the_claim() -> None:
    claim = {
        "bucket": "b",
        "path": "uploads/u1/cat.jpg",
        "generation": "1764000000000001",  # stored as a string (above 2^53)
        "size": 1234,
        "clientContentType": "image/jpeg",
    }
    assert upload_of_result(claim) == Upload(
        "b", "uploads/u1/cat.jpg", 1764000000000001, 1234, "image/jpeg"
    )
    assert upload_of_result({**claim, "size": None}).size == 0
    echoed = upload_of_result({**claim, "customMetadata": {"postId": "p-1"}})
    assert echoed.metadata == (("postId", "p-1"),)  # a retry writes the same fields


@pytest.mark.parametrize("missing", ["bucket", "path", "generation"])
def test_a_document_that_is_not_a_claim_is_not_rebuilt(missing: str) -> None:
    claim = {"bucket": "b", "path": "uploads/u1/x.jpg", "generation": "7"}
    assert upload_of_result({**claim, missing: None}) is None
    del claim[missing]
    assert upload_of_result(claim) is None


def test_a_generation_that_is_not_a_number_is_not_rebuilt() -> None:
    claim = {"bucket": "b", "path": "uploads/u1/x.jpg", "generation": "seven"}
    assert upload_of_result(claim) is None


def test_the_give_up_message_names_the_attempts_and_the_code_is_stable() -> None:
    assert str(ErrorCode.INTERRUPTED) == "INTERRUPTED"
    assert "2 times" in INTERRUPTED_MESSAGE.format(attempts=2)


def test_main_schedules_one_sweeper_at_a_time(main_module) -> None:
    endpoint = main_module.recover_interrupted.__firebase_endpoint__
    assert endpoint.scheduleTrigger["schedule"] == "every 10 minutes"
    assert endpoint.maxInstances == 1
    # A retry may take as long as an upload's own run: same memory and time limit.
    upload = main_module.classify_upload.__firebase_endpoint__
    assert (endpoint.availableMemoryMb, endpoint.timeoutSeconds) == (
        upload.availableMemoryMb,
        upload.timeoutSeconds,
    )
