"""End to end on CPU: train -> export -> quantize -> evaluate on a tiny generated dataset.

Small enough for a 2-core CI machine (32 px inputs, a few optimizer steps), real enough to
exercise every artefact and the model contract, including resume.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_build.onnx_export import read_metadata, run_onnx, session
from model_build.serving import REPO_ROOT

from .conftest import make_idx_dir

pytestmark = pytest.mark.slow


def mb(*args: str | Path) -> subprocess.CompletedProcess:
    """Run ``python -m model_build ...`` as a user would."""
    out = subprocess.run(
        [sys.executable, "-m", "model_build", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("smoke")
    data = make_idx_dir(tmp / "data", train_per_class=7, test_per_class=3)
    run = tmp / "run"
    common = [
        "--data",
        data,
        "--out",
        run,
        "--size",
        "32",
        "--head-epochs",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--workers",
        "2",
        "--ema",
        "0.9",
    ]
    # First call stops after one epoch (time budget), the second resumes and finishes.
    first = mb("train", *common, "--max-minutes", "0.0001")
    assert "time budget" in first.stdout
    second = mb("train", "--out", run, "--resume")
    assert "resumed from epoch 0" in second.stdout
    mb(
        "export",
        "--checkpoint",
        run / "best.pt",
        "--name",
        "smoke-test",
        "--version",
        "0.0.1",
        "--calibration",
        "minmax",
        "--calib-images",
        "16",
        "--check-images",
        "12",
    )
    export = run / "export"
    mb(
        "evaluate",
        "--model",
        export / "smoke_test.int8.onnx",
        "--compare",
        export / "smoke_test.fp32.onnx",
        "--run",
        run,
        "--limit",
        "20",
        "--latency-images",
        "3",
    )
    return {"run": run, "export": export, "data": data}


def test_training_artefacts(pipeline: dict[str, Path]) -> None:
    run = pipeline["run"]
    for name in ("best.pt", "last.pt", "config.json", "metrics.jsonl"):
        assert (run / name).is_file(), name
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["phase"] for r in rows] == ["head", "finetune"]
    assert all(0 <= r["val_top1"] <= 1 and np.isfinite(r["train_loss"]) for r in rows)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["extra"]["val_images"] > 0 and cfg["size"] == 32


def test_export_contract_and_parity(pipeline: dict[str, Path]) -> None:
    export = pipeline["export"]
    report = json.loads((export / "export.json").read_text())
    assert report["parity_max_abs_diff_fp32_vs_torch"] < 1e-4
    assert report["calibration"] == "minmax"
    for path in (export / "smoke_test.fp32.onnx", export / "smoke_test.int8.onnx"):
        meta = read_metadata(path)
        assert meta.name == "smoke-test" and meta.version == "0.0.1"
        assert meta.resize == "squash" and meta.input_size == (32, 32)
        assert meta.labels[0] == "T-shirt/top" and len(meta.labels) == 10
        x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        p = run_onnx(session(path), x)
        assert p.shape == (3, 10) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert (export / "smoke_test.int8.onnx").stat().st_size < (
        export / "smoke_test.fp32.onnx"
    ).stat().st_size / 2


def test_int8_loads_in_the_functions(pipeline: dict[str, Path]) -> None:
    from media_classifier.inference.model import Model

    model = Model.load(pipeline["export"] / "smoke_test.int8.onnx")
    assert model.input_size == (32, 32) and model.resize_policy == "squash"
    assert model.predict(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 10)


def test_evaluation_card(pipeline: dict[str, Path]) -> None:
    export = pipeline["export"]
    card = (export / "smoke_test.md").read_text()
    for needle in (
        "# smoke-test 0.0.1",
        "## Goals",
        "top-1",
        "## Per class",
        "smoke_test.confusion.png",
        "smoke_test.curves.png",
        "python -m model_build train",
        "fp32 ONNX vs PyTorch",
    ):
        assert needle in card, needle
    assert (export / "smoke_test.confusion.png").stat().st_size > 1000
    assert (export / "smoke_test.curves.png").stat().st_size > 1000
    result = json.loads((export / "smoke_test.eval.json").read_text())
    assert result["model"]["images"] == 20
    assert result["model"]["prob_sum_max_dev"] < 1e-4
