"""``make bench`` works: its script runs end to end in quick mode and writes well-formed results.

Timings are never asserted (they depend on the machine and its load); what is asserted is
that every case ran, the output has the shape the README and chart rely on, and the
notebook way and the project's fp32 pipeline agree on what the photo shows.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.timing import Budget, measure, percentile, summarize

REPO = Path(__file__).resolve().parents[2]
MB_PYTHON = REPO / "model_build/.venv/bin/python"


def test_percentile_is_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 11)]  # 1..10
    assert percentile(samples, 50) == 5.0
    assert percentile(samples, 90) == 9.0
    assert percentile(samples, 100) == 10.0
    assert percentile([3.0], 90) == 3.0


def test_summarize_and_measure_count_calls() -> None:
    calls: list[int] = []
    stats, outs = measure(lambda: calls.append(1) or len(calls), Budget(2, 5, 5, 0.0))
    assert len(calls) == 7  # 2 warm-up + 5 timed
    assert outs == [3, 4, 5, 6, 7]
    assert stats["n"] == 5
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert (s["median_ms"], s["p90_ms"], s["min_ms"], s["mean_ms"]) == (2.5, 4.0, 1.0, 2.5)


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    if not MB_PYTHON.is_file():
        pytest.skip("model_build venv missing: make model-build-venv")
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [str(MB_PYTHON), "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), out, proc.stdout


def _timed(case: dict) -> None:
    assert "error" not in case, case.get("error")
    t = case["time"]
    assert t["n"] >= 1
    assert 0 < t["min_ms"] <= t["median_ms"] <= t["p90_ms"]
    assert case["peak_rss_mib"] > 10


@pytest.mark.slow
def test_quick_bench_images(quick_results: tuple[dict, Path, str]) -> None:
    res, _, _ = quick_results
    assert set(res["image"]) == {
        "jpeg_12mp",
        "jpeg_12mp_smooth",
        "jpeg_12mp_progressive",
        "heic_12mp",
        "png_03mp",
    }
    for name, ways in res["image"].items():
        assert set(ways) == {"notebook", "fp32", "int8"}
        for way, case in ways.items():
            if name == "heic_12mp" and way == "notebook":
                assert "HEIC" in case["error"]  # the notebook way cannot read it at all
                continue
            _timed(case)
        assert {"decode", "inference"} <= set(ways["int8"]["stages_median_ms"])
        if name != "heic_12mp":
            # Same photo, same weights: torchvision's way and the fp32 ONNX pipeline agree.
            assert ways["notebook"]["top1"] == ways["fp32"]["top1"]
    # The iPhone rendition of the phone-like photo is recognised as the JPEG is.
    assert res["image"]["heic_12mp"]["fp32"]["top1"] == res["image"]["jpeg_12mp"]["fp32"]["top1"]


@pytest.mark.slow
def test_quick_bench_inference_video_cold_start(quick_results: tuple[dict, Path, str]) -> None:
    res, _, _ = quick_results
    assert set(res["inference"]) == {"fp32_b1", "fp32_b16", "int8_b1", "int8_b16"}
    for key, case in res["inference"].items():
        _timed(case)
        assert case["batch"] == int(key.rsplit("_b", 1)[1])
    one, five = res["video"]["1fps"], res["video"]["5fps"]
    _timed(one)
    _timed(five)
    seconds = res["meta"]["video_seconds"]
    assert abs(one["frames"] - seconds) <= 1
    assert five["frames"] > 4 * one["frames"] - 2
    assert one["x_realtime"] > 0
    cold = res["cold_start"]
    assert "error" not in cold, cold.get("error")
    assert {"import_main_ms", "model_load_ms", "first_inference_ms", "to_first_result_ms"} <= set(
        cold["summary"]
    )
    assert cold["top1"] == res["image"]["jpeg_12mp"]["int8"]["top1"]
    assert set(res["models"]) == {"fp32", "int8"}
    assert res["models"]["int8"]["bytes"] < res["models"]["fp32"]["bytes"]


@pytest.mark.slow
def test_quick_bench_writes_table_and_chart(quick_results: tuple[dict, Path, str]) -> None:
    res, out, stdout = quick_results
    assert [g["goal"] for g in res["goals"]] == [
        "jpeg_int8_ms",
        "jpeg_speedup",
        "jpeg_smooth_int8_ms",
        "jpeg_smooth_speedup",
        "png_int8_ms",
        "video_1fps_s",
        "cold_start_ms",
    ]
    verdicts = {g["goal"]: g["verdict"] for g in res["goals"]}
    assert verdicts.pop("video_1fps_s") == "n/a"  # the goal is for a 60 s clip, not --quick's
    assert set(verdicts.values()) <= {"PASS", "FAIL"}
    table = (out / "results.md").read_text()
    assert "## Goals" in table and "## 5. Model files" in table
    assert "## Goals" in stdout
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_models_prints_a_table_for_both_files() -> None:
    """The model A/B script runs (quick budgets, one round); numbers are not judged."""
    if not MB_PYTHON.is_file():
        pytest.skip("model_build venv missing: run `make model-build-venv` (make test does)")
    model = str(REPO / "functions" / "models" / "imagenet_mobilenet_v2.int8.onnx")
    proc = subprocess.run(
        [str(MB_PYTHON), "-m", "bench.compare_models", model, model, "--rounds", "1", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| batch")]
    assert len(rows) == 2 and all(line.count("peak RSS") == 2 for line in rows)
