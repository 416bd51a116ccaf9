"""The backfill's pure parts: which results to redo, pacing, resumable state, listing.

The command itself runs against the emulators in ``tests/e2e/test_backfill_command.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from media_classifier.flows.backfill import (
    Pacer,
    Scope,
    list_uploads,
    load_state,
    redo_reason,
    save_state,
)
from media_classifier.ops.backfill_command import build_parser
from media_classifier.store.results import decide

SHA = "3c0d71bf13e1"
MODEL = {
    "id": "imagenet_mobilenet_v2",
    "name": "imagenet-mobilenet-v2",
    "version": "1.1.0",
    "sha": SHA,
}
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _done(
    version: str = "1.1.0", model_id: str = "imagenet_mobilenet_v2", sha: str | None = SHA
) -> dict:
    model = {"id": model_id, "version": version, "sha": sha}
    return {"status": "done", "generation": "7", "model": model}


def _error(code: str) -> dict:
    return {"status": "error", "generation": "7", "error": {"code": code, "message": "x"}}


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (_done(), None),
        (_done(version="1.0.0"), "model changed: imagenet_mobilenet_v2 1.0.0 sha 3c0d"),
        (_done(model_id="other"), "model changed: other 1.1.0 sha 3c0d"),
        # A retrained file under the same id and version: another content hash.
        (_done(sha="5e68e8207f76"), "model changed: imagenet_mobilenet_v2 1.1.0 sha 5e68"),
        # Written before results named the file: cannot be shown current.
        (_done(sha=None), "model changed: imagenet_mobilenet_v2 1.1.0 sha None -> "),
        ({"status": "done", "generation": "7"}, "model changed: None None sha None -> "),
        (_error("TIMEOUT"), "retryable error TIMEOUT"),
        (_error("INTERNAL"), "retryable error INTERNAL"),
        (_error("NOT_FOUND"), "retryable error NOT_FOUND"),
        (_error("UNKNOWN_MODEL"), "retryable error UNKNOWN_MODEL"),
        (_error("UNSUPPORTED_MEDIA"), None),
        (_error("CORRUPT_MEDIA"), None),
        (_error("TOO_LARGE"), None),
    ],
)
def test_redo_reason(existing: dict, expected: str | None) -> None:
    reason = redo_reason(existing, MODEL)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(expected)


def test_everything_redoes_even_current_results() -> None:
    assert redo_reason(_done(), MODEL, everything=True) == "backfill --everything"


def test_errors_named_on_the_command_line_are_redone_too() -> None:
    also = frozenset({"TOO_LARGE", "INTERRUPTED"})
    assert redo_reason(_error("TOO_LARGE"), MODEL, also=also) == "error TOO_LARGE (--errors)"
    assert redo_reason(_error("INTERRUPTED"), MODEL, also=also) is not None
    assert redo_reason(_error("CORRUPT_MEDIA"), MODEL, also=also) is None
    assert redo_reason(_error("TIMEOUT"), MODEL, also=also) == "retryable error TIMEOUT"


def test_the_errors_option_takes_known_codes_only() -> None:
    args = build_parser().parse_args(["--errors", "too_large, INTERRUPTED"])
    assert args.errors == frozenset({"TOO_LARGE", "INTERRUPTED"})
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--errors", "TOO_BIG"])


def test_decide_reopens_a_finished_result_only_through_redo() -> None:
    def redo(existing: dict) -> str | None:
        return redo_reason(existing, MODEL)

    stale = _done(version="1.0.0")
    assert not decide(stale, 7, NOW).claim  # an event never reclassifies a finished result
    assert decide(stale, 7, NOW, redo).claim
    assert not decide(_done(), 7, NOW, redo).claim
    assert not decide(stale, 6, NOW, redo).claim  # an older generation never wins
    processing = {"status": "processing", "generation": "7", "updatedAt": NOW}
    assert not decide(processing, 7, NOW, redo).claim  # a live claim is left alone


def test_pacer_spaces_calls() -> None:
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pacer = Pacer(4.0, clock=lambda: clock[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()
    assert slept == [0.25, 0.25]
    clock[0] += 10  # idle time is not banked into a burst
    pacer.wait()
    pacer.wait()
    assert slept == [0.25, 0.25, 0.25]


def test_pacer_without_a_rate_never_sleeps() -> None:
    pacer = Pacer(0, sleep=lambda s: pytest.fail("slept"))
    for _ in range(5):
        pacer.wait()


def test_state_round_trip_and_scope_check(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    scope = Scope(bucket="b", under="uploads/u/")
    assert load_state(path, scope) is None
    save_state(path, scope, "uploads/u/x.jpg", Counter(scanned=3))
    assert load_state(path, scope) == "uploads/u/x.jpg"
    assert json.loads(path.read_text())["counts"] == {"scanned": 3}
    assert not path.with_name("state.json.tmp").exists()
    with pytest.raises(SystemExit, match="another backfill"):
        load_state(path, Scope(bucket="b", under="uploads/other/"))


@dataclass
class _Blob:
    name: str
    generation: int = 1
    size: int = 10
    content_type: str | None = "image/jpeg"


class _Listing:
    """What ``Bucket.list_blobs`` returns, for the filtering logic only (no server)."""

    name = "bucket"

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls: list[dict] = []

    def list_blobs(self, **kwargs: object) -> list[_Blob]:
        self.calls.append(kwargs)
        return [_Blob(n) for n in self.names]


def test_listing_resumes_strictly_after_the_last_name() -> None:
    listing = _Listing(["uploads/u/a.jpg", "uploads/u/b.jpg", "uploads/u/c.jpg"])
    names = [u.name for u in list_uploads(listing, "uploads/u/", "uploads/u/b.jpg")]
    assert names == ["uploads/u/c.jpg"]  # start_offset is inclusive; b is not redone
    assert listing.calls == [{"prefix": "uploads/u/", "start_offset": "uploads/u/b.jpg"}]
    assert [u.bucket for u in list_uploads(listing, "uploads/u/", None)] == ["bucket"] * 3
