"""Pure parts of ``compare``: the verdict per upload, which results are compared, the tally.

The command itself runs against the emulators in ``tests/e2e/test_compare_command.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from media_classifier.ops.compare import Tally, candidates, main, verdict
from media_classifier.store.uploads import Upload
from tests.model_factory import colour_model


def _labels(*names: str) -> list[dict]:
    return [{"label": name, "score": 1.0 / (i + 1)} for i, name in enumerate(names)]


def test_verdict_same_in_top_k_or_changed() -> None:
    current = _labels("tabby", "tiger cat", "Egyptian cat")
    assert verdict(current, _labels("tabby", "lynx")) == "same"
    assert verdict(current, _labels("tiger cat", "tabby")) == "in top-k"
    assert verdict(current, _labels("lynx", "tabby")) == "changed"
    assert verdict([], _labels("lynx")) == "changed"  # a result without labels


def test_only_finished_results_of_the_replaced_model_and_this_generation_are_compared() -> None:
    def result(**fields: object) -> dict:
        return {"status": "done", "generation": "7", "model": {"id": "m"}, **fields}

    scanned = [
        (Upload("b", "uploads/u/a.jpg", 7, 1), result()),
        (Upload("b", "uploads/u/b.jpg", 7, 1), None),
        (Upload("b", "uploads/u/c.jpg", 7, 1), result(status="error")),
        (Upload("b", "uploads/u/d.jpg", 7, 1), result(model={"id": "other"})),
        (Upload("b", "uploads/u/e.jpg", 8, 1), result()),  # re-uploaded after its result
    ]
    tally = Tally()
    chosen = [upload.name for upload, _ in candidates(scanned, "m", tally)]
    assert chosen == ["uploads/u/a.jpg"]
    assert tally.counts == {
        "no finished result": 2,
        "another model's result": 1,
        "re-uploaded since": 1,
    }


def test_results_of_the_candidate_file_itself_are_skipped_and_older_files_counted() -> None:
    def result(sha: str | None) -> dict:
        return {"status": "done", "generation": "7", "model": {"id": "m", "sha": sha}}

    scanned = [
        (Upload("b", "uploads/u/a.jpg", 7, 1), result("aaaaaaaaaaaa")),
        (Upload("b", "uploads/u/b.jpg", 7, 1), result("cccccccccccc")),  # the candidate's
        (Upload("b", "uploads/u/c.jpg", 7, 1), result("aaaaaaaaaaaa")),
        (Upload("b", "uploads/u/d.jpg", 7, 1), result(None)),  # before results named files
    ]
    tally = Tally()
    chosen = [u.name for u, _ in candidates(scanned, "m", tally, "cccccccccccc")]
    assert chosen == ["uploads/u/a.jpg", "uploads/u/c.jpg", "uploads/u/d.jpg"]
    assert tally.counts == {"the candidate's own result": 1}
    assert tally.summary()["resultsBySha"] == [
        {"sha": "aaaaaaaaaaaa", "count": 2},
        {"sha": None, "count": 1},
    ]


def test_the_summary_counts_agreement_over_answered_uploads_only() -> None:
    tally = Tally()
    for outcome, old, new in [
        ("same", "tabby", "tabby"),
        ("same", "cup", "cup"),
        ("changed", "tabby", "lynx"),
        ("in top-k", "cup", "espresso"),
        ("changed", "tabby", "lynx"),
        ("candidate error", None, None),
    ]:
        tally.add(outcome, old, new)
    summary = tally.summary()
    assert summary["compared"] == 5 and summary["agreement"] == 0.4
    assert summary["topChanges"][0] == {"from": "tabby", "to": "lynx", "count": 2}
    assert summary["candidate error"] == 1
    assert Tally().summary()["agreement"] is None


def test_a_missing_or_contract_breaking_model_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as missing:
        main(["--model", str(tmp_path / "nope.onnx")])
    assert missing.value.code == 2 and "no file" in capsys.readouterr().err
    broken = colour_model(tmp_path / "broken.onnx", metadata={"labels": "[]"})
    with pytest.raises(SystemExit) as contract:
        main(["--model", str(broken)])
    assert contract.value.code == 2 and "not a model" in capsys.readouterr().err
