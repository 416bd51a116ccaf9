"""DistributedDataParallel under torchrun, unchanged code: two CPU processes (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_build.serving import REPO_ROOT

from .conftest import make_idx_dir

pytestmark = pytest.mark.slow


def test_torchrun_two_processes(tmp_path: Path) -> None:
    data = make_idx_dir(tmp_path / "data", train_per_class=4, test_per_class=1)
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "model_build",
        "train",
        "--data",
        str(data),
        "--out",
        str(run),
        "--size",
        "32",
        "--head-epochs",
        "1",
        "--epochs",
        "0",
        "--batch-size",
        "16",
        "--workers",
        "1",
    ]
    out = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "world 2" in out.stdout
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1, "only rank 0 logs"
    assert (run / "best.pt").is_file()
