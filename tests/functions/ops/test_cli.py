"""``python -m media_classifier``: one JSON line per file, never a traceback for bad media."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.model_factory import colour_model

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    colour_model(models / "colour.onnx")
    env = {**os.environ, "MC_MODELS_DIR": str(models), "DEFAULT_MODEL": "colour"}
    return subprocess.run(
        [sys.executable, "-m", "media_classifier", *args],
        cwd=FUNCTIONS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_a_result_per_file(tmp_path: Path) -> None:
    red = tmp_path / "red.jpg"
    Image.new("RGB", (50, 40), "red").save(red)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    proc = _run(tmp_path, str(red), str(text), "--top-k", "2")
    assert proc.returncode == 1, proc.stderr  # one file failed
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert first["status"] == "done" and first["labels"][0]["label"] == "red"
    assert len(first["labels"]) == 2 and first["kind"] == "image"
    assert second["status"] == "error" and second["error"]["code"] == "UNSUPPORTED_MEDIA"


def test_cli_lists_models(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--models")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == "colour"


def test_cli_unknown_model(tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    proc = _run(tmp_path, str(img), "--model", "nope")
    assert json.loads(proc.stdout)["error"]["code"] == "UNKNOWN_MODEL"
