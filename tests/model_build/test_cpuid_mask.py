"""AVX2 kernels on this CPU's silicon: the CPUID mask really changes ONNX Runtime's kernels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_build import cpuid_mask
from model_build.cpu_check import FASHION_DIR
from model_build.serving import REPO_ROOT

REASON = cpuid_mask.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

FASHION = REPO_ROOT / "functions" / "models" / "fashion_mnist_mobilenet_v2.int8.onnx"
#: Fashion-MNIST test images compared bit for bit between this CPU and its AVX2 kernels.
IMAGES = 1000
SCRIPT = """
import json, sys
import numpy as np
from media_classifier.inference.model import Model
from model_build.cpu import describe, u8s8_saturates_measured
from model_build.cpu_check import fashion_inputs
path, images, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = {"cpu": describe(), "exact_path_saturates": u8s8_saturates_measured(exact_int8=True)}
if images:
    served = Model.load(path, threads=1)
    x, _ = fashion_inputs(served.input_size, served.resize_policy, limit=images)
    np.save(out_path, np.concatenate([served.predict(x[i : i + 50]) for i in range(0, len(x), 50)]))
    out["exact_int8"] = served.exact_int8
print(json.dumps(out))
"""


def _run(images: int, out_path: Path, *, masked: bool = True) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(FASHION), str(images), str(out_path)],
        capture_output=True,
        text=True,
        env=cpuid_mask.environ() if masked else None,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_masked_process_sees_an_avx2_cpu_on_real_silicon(tmp_path: Path) -> None:
    cpu = _run(0, tmp_path / "unused.npy")["cpu"]
    assert cpu["int8_kernels"] == "avx2" and not cpu["avx512f"], cpu
    assert cpu["cpuid_masked"] and not cpu["emulated"], cpu
    assert "hidden from CPUID" in cpu["name"], cpu
    assert cpu["serving_int8_path"].startswith("U8U8"), cpu


def test_onnx_runtime_runs_its_avx2_kernels_under_the_mask(tmp_path: Path) -> None:
    """The probe's U8S8 product saturates and the exact path's does not: the mask changed
    the kernels, so the latencies measured under it are those of AVX2 kernels."""
    out = _run(0, tmp_path / "unused.npy")
    assert out["cpu"]["u8s8_saturates"] and not out["exact_path_saturates"], out


def test_the_fashion_file_gives_this_cpus_answers_on_u8s8_avx2_kernels(tmp_path: Path) -> None:
    """Its dense layers take 7-bit activations (``model_build narrow-inputs``): served by the
    fast U8S8 kernels on AVX2 too, with this CPU's answers. Not always to the bit: a value
    beyond its 7-bit range can still saturate a pair (1.2.0: 30 of the 10,000 test images, 4
    of the first 1,000 by at most 3e-5, one other image by 0.002; 1.1.0: 2, by 5e-5); the
    8-bit file moved 1.8 % of the labels, by up to 0.8."""
    if not FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST test images missing: `make fashion-data` fetches them")
    masked = _run(IMAGES, tmp_path / "masked.npy")
    here = _run(IMAGES, tmp_path / "here.npy", masked=False)
    assert masked["cpu"]["u8s8_saturates"] and masked["exact_int8"] is False, masked
    assert here["exact_int8"] is False, here
    avx2, native = np.load(tmp_path / "masked.npy"), np.load(tmp_path / "here.npy")
    assert avx2.shape == (IMAGES, 10)
    assert np.array_equal(avx2.argmax(1), native.argmax(1))
    assert np.abs(avx2 - native).max() <= 1e-4, np.abs(avx2 - native).max()
    assert (np.abs(avx2 - native).max(1) == 0).mean() >= 0.99


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
    assert row["kernels"]["AVX2 kernels, served"] == "U8S8", row
    assert "served / U8S8 on AVX2" in proc.stdout and "hidden from CPUID" in proc.stdout
