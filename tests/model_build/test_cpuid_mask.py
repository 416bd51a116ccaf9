"""AVX2 kernels on this CPU's silicon: the CPUID mask really changes ONNX Runtime's kernels."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model_build import cpuid_mask
from model_build.cpu_check import FASHION_DIR
from model_build.serving import REPO_ROOT

REASON = cpuid_mask.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

FASHION = REPO_ROOT / "functions" / "models" / "fashion_mnist_mobilenet_v2.int8.onnx"
#: First Fashion-MNIST test images whose label saturating U8S8 kernels change (the same
#: probes as the emulated AVX2 check in tests/functions/inference/test_shipped_models.py).
PROBES = [27, 42, 43, 98, 271, 444, 0, 1]
SCRIPT = """
import json, sys
from media_classifier.inference.model import Model, session_options
import onnxruntime as ort
from model_build.cpu import describe
from model_build.cpu_check import fashion_inputs
path, picks = sys.argv[1], json.loads(sys.argv[2])
top = lambda p: p.argmax(1).tolist()
out = {"cpu": describe()}
if picks:
    served = Model.load(path, threads=1)
    reference = Model.load(path, threads=1, reference=True)
    u8s8 = ort.InferenceSession(path, session_options(1, exact_int8=False))
    x, _ = fashion_inputs(served.input_size, served.resize_policy, limit=max(picks) + 1)
    x = x[picks]
    out |= {
        "served": top(served.predict(x)),
        "reference": top(reference.predict(x)),
        "u8s8": top(u8s8.run(None, {served.input_name: x})[0]),
    }
print(json.dumps(out))
"""


def _run_masked(picks: list[int]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(FASHION), json.dumps(picks)],
        capture_output=True,
        text=True,
        env=cpuid_mask.environ(),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_masked_process_sees_an_avx2_cpu_on_real_silicon() -> None:
    cpu = _run_masked([])["cpu"]
    assert cpu["int8_kernels"] == "avx2" and not cpu["avx512f"], cpu
    assert cpu["cpuid_masked"] and not cpu["emulated"], cpu
    assert "hidden from CPUID" in cpu["name"], cpu
    assert cpu["serving_int8_path"].startswith("U8U8"), cpu


def test_onnx_runtime_runs_its_avx2_kernels_under_the_mask() -> None:
    """U8S8 saturates (labels move) and the serving options' exact path does not: the mask
    changed the kernels, so the latencies measured under it are those of AVX2 kernels."""
    if not FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST test images missing: `make fashion-data` fetches them")
    out = _run_masked(PROBES)
    assert out["served"] == out["reference"], out
    assert out["u8s8"] != out["reference"], out


def test_the_latency_table_puts_the_three_columns_side_by_side(tmp_path) -> None:
    out = tmp_path / "latency.json"
    args = ["int8-latency", str(FASHION), "--quick", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "model_build", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        check=True,
    )
    (row,) = json.loads(out.read_text())["rows"]
    assert len([k for k, v in row.items() if isinstance(v, float)]) == 3, row
    assert "exact / U8S8 on AVX2" in proc.stdout and "hidden from CPUID" in proc.stdout
