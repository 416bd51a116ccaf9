"""cpu-check keeps its row where only the serving stack is installed (an emulated ARM64 Python)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import model_build
from model_build.__main__ import main
from model_build.serving import REPO_ROOT

FASHION = REPO_ROOT / "functions" / "models" / "fashion_mnist_mobilenet_v2.int8.onnx"


def test_a_row_is_printed_and_recorded_without_the_card_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / FASHION.name
    shutil.copy(FASHION, model)
    rng = np.random.default_rng(0)
    inputs = tmp_path / "inputs.npz"
    np.savez_compressed(inputs, x=rng.integers(0, 256, (8, 144, 144, 3), dtype=np.uint8))
    # As if the card's dependencies were missing: the import raises ImportError.
    monkeypatch.delattr(model_build, "card", raising=False)
    monkeypatch.setitem(sys.modules, "model_build.card", None)

    main(["cpu-check", "--model", str(model), "--inputs", str(inputs), "--record"])

    out = capsys.readouterr().out
    assert "no table:" in out and "recorded in" in out
    (row,) = json.loads((tmp_path / "fashion_mnist_mobilenet_v2.cpus.json").read_text())
    assert row["images"] == 8 and row["cpu"]["machine"]
    assert json.loads(out[: out.index("\nno table:")])["images"] == 8
