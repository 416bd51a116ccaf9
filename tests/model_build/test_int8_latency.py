"""int8-latency's schedule: files and columns alternate round by round, ratios are paired."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model_build import cpuid_mask, int8_latency

OLD, NEW = Path("old.onnx"), Path("new.onnx")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Replace the timed child process: ms grow with each call, as on a machine slowing down."""
    made: list[tuple[str, str]] = []
    monkeypatch.setattr(cpuid_mask, "unavailable_reason", lambda: None)

    def child(path: Path, threads: int, runs: int, *, masked: bool, exact: bool | None) -> dict:
        made.append((path.name, f"masked={masked} exact={exact}"))
        cpu: dict[str, Any] = {"name": "test CPU", "avx2": True}
        base = 2.0 if path == NEW else 1.0
        return {"ms": base + len(made), "cpu": cpu, "exact": bool(exact)}

    monkeypatch.setattr(int8_latency, "_child", child)
    return made


def test_every_round_runs_both_files_and_odd_rounds_run_backwards(calls) -> None:
    int8_latency.measure([NEW, OLD], threads=1, runs=1, rounds=2)
    per_round = len(int8_latency.VARIANTS) * 2
    first, second = calls[:per_round], calls[per_round:]
    assert {name for name, _ in first} == {"new.onnx", "old.onnx"}
    assert second == first[::-1]


def test_file_ratios_are_paired_round_by_round(calls) -> None:
    result = int8_latency.measure([NEW, OLD], threads=1, runs=1, rounds=2)
    (row,) = result["paired"]["rows"]
    assert result["paired"]["baseline"] == "old.onnx" and row["model"] == "new.onnx"
    new = {r["model"]: r for r in result["rows"]}["new.onnx"]["samples"]
    old = {r["model"]: r for r in result["rows"]}["old.onnx"]["samples"]
    for name, _, _ in int8_latency.VARIANTS:
        ratios = sorted(a / b for a, b in zip(new[name], old[name], strict=True))
        assert row[name] == pytest.approx(sum(ratios) / 2, abs=1e-3)
    on_avx2, plain = int8_latency.ON_AVX2, int8_latency.PLAIN_U8S8
    ratios = sorted(a / b for a, b in zip(new[on_avx2], old[plain], strict=True))
    assert row[int8_latency.SERVED_VS_BASE_U8S8] == pytest.approx(sum(ratios) / 2, abs=1e-3)
    assert "Per-round ratio to old.onnx" in int8_latency.table(result)
    assert int8_latency.SERVED_VS_BASE_U8S8 in int8_latency.table(result)


def test_two_files_of_one_name_keep_their_own_rows(calls) -> None:
    built, shipped = Path("build/model.onnx"), Path("models/model.onnx")
    result = int8_latency.measure([built, shipped], threads=1, runs=1, rounds=1)
    assert [r["model"] for r in result["rows"]] == ["build/model.onnx", "models/model.onnx"]
    assert all(len(v) == 1 for r in result["rows"] for v in r["samples"].values())
    assert result["paired"]["baseline"] == "models/model.onnx"
