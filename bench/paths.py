"""Where the benchmark finds the repository, its interpreters, models and generated inputs."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = REPO / "functions"
MODELS = FUNCTIONS / "models"
INT8_MODEL = MODELS / "imagenet_mobilenet_v2.int8.onnx"
#: The fp32 twin ``python -m model_build export-pretrained`` keeps (git-ignored build folder).
FP32_MODEL = REPO / "runs/export-pretrained/imagenet_mobilenet_v2.fp32.onnx"
#: Generated inputs (12 MP JPEG, 60 s video ...) are cached here, git-ignored.
INPUTS = REPO / "runs/bench/inputs"
RESULTS = REPO / "bench/results"
#: The deployed runtime's interpreter (Python 3.12 + functions/requirements.txt, ``make venv``).
FUNCTIONS_PYTHON = FUNCTIONS / "venv/bin/python"
SAMPLES = REPO / "samples/images"
