"""``dyadic-finetune``: a file made by ``train`` + ``export`` (BatchNorm folded by the exporter,
normalization its own op, 7-bit dense inputs) is read back, fine-tuned through the dyadic
simulation and written as a dyadic file whose two executions agree to the bit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from media_classifier.inference.model import INT8_SCALES_DYADIC, INT8_SCALES_KEY, Model
from model_build import qsim
from model_build.backbones import get_backbone
from model_build.contract import ModelMeta
from model_build.data import write_idx
from model_build.dyadic_finetune import dyadic_scheme, finetune, load_network, write_file
from model_build.narrow import narrow_file
from model_build.onnx_export import export_serving
from model_build.quantize import quantize_int8
from model_build.wrapper import ServingModel

from .tiny_mobile import MEAN, META, SIZE, STD, smooth_images, tiny


def _exported(net: torch.nn.Module, meta: ModelMeta, images: np.ndarray, tmp: Path) -> Path:
    """What ``export`` writes for a trained network: unfolded serving graph, int8, narrowed."""
    fp32 = export_serving(ServingModel(net, MEAN, STD).eval(), meta, tmp / "m.fp32.onnx")
    int8 = quantize_int8(fp32, tmp / "m.int8.onnx", images)
    narrow_file(int8, int8, None)
    return int8


def test_the_file_is_read_back_into_the_network_it_came_from(tmp_path: Path) -> None:
    images = smooth_images(24, 0)
    path = _exported(tiny(), META, images, tmp_path)
    model = onnx.load(str(path))
    serving, params, narrowed = load_network(model, tiny(), MEAN, STD)
    assert narrowed and set(narrowed) <= set(params)
    file_params = qsim.activation_params(path)
    for t, (scale, zero) in params.items():
        want = (file_params[t][0] / 2, file_params[t][1] * 2) if t in narrowed else file_params[t]
        assert (scale, zero) == pytest.approx(want)
    # the simulation of the file as it is computes the file's probabilities
    qsim.attach(serving, params, narrowed=narrowed)
    with torch.no_grad():
        simulated = serving(torch.from_numpy(images)).numpy()
    served = Model.load(path, reference=True).predict(images)
    assert np.abs(simulated - served).max() < 0.02
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert any(name.startswith("onnx::Conv") for name in arrays)  # the exporter's names


def test_a_fine_tuned_file_is_dyadic_and_exact(tmp_path: Path) -> None:
    images, test = smooth_images(24, 0), smooth_images(16, 1)
    labels = np.arange(len(images)) % len(META.labels)
    path = _exported(tiny(), META, images, tmp_path)
    model = onnx.load(str(path))
    serving, params, narrowed = load_network(model, tiny(), MEAN, STD)
    scheme = dyadic_scheme(model, params, narrowed)
    assert scheme["additions"] and scheme["lifted"]  # its one block's tensors are 7-bit
    learned = finetune(serving, params, scheme, images, labels, steps=3, batch=8, lr=1e-3)
    # 7-bit ranges at least the file's (AVX2's U8S8 pairs stay safe), the others free
    for t in narrowed:
        if not t.endswith("Flatten_output_0"):  # ONNX Runtime gives it the pooling's
            assert learned[t][0] >= params[t][0], t
    out = tmp_path / "new.int8.onnx"
    meta = ModelMeta(META.name, "0.2.0", META.labels, META.resize, SIZE)
    write_file(serving, learned, narrowed, meta, images, out)
    served = Model.load(out)
    assert served.version == "0.2.0" and list(served.labels) == list(META.labels)
    metadata = served.session.get_modelmeta().custom_metadata_map
    assert metadata[INT8_SCALES_KEY] == INT8_SCALES_DYADIC
    np.testing.assert_array_equal(
        served.predict(test), Model.load(out, reference=True).predict(test)
    )


def test_the_command_fine_tunes_a_mobilenet_file_on_an_idx_dataset(tmp_path: Path) -> None:
    """The CLI end to end on a MobileNetV2 file (untrained weights) and a small IDX dataset."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    grey = rng.integers(0, 255, (40, 28, 28), dtype=np.uint8)
    for stem, values in (
        ("train-images-idx3-ubyte", grey),
        ("train-labels-idx1-ubyte", (np.arange(40) % 2).astype(np.uint8)),
        ("t10k-images-idx3-ubyte", grey[:10]),
        ("t10k-labels-idx1-ubyte", (np.arange(10) % 2).astype(np.uint8)),
    ):
        write_idx(data / stem, values)
    backbone = get_backbone("mobilenet_v2")
    net = backbone.skeleton(2, 32).eval()
    meta = ModelMeta("twoclass", "1.0.0", ("a", "b"), "squash", (32, 32))
    images = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    fp32 = export_serving(
        ServingModel(net, backbone.mean, backbone.std).eval(), meta, tmp_path / "m.fp32.onnx"
    )
    path = quantize_int8(fp32, tmp_path / "m.int8.onnx", images)
    narrow_file(path, path, None)
    out = tmp_path / "new.int8.onnx"
    args = ["--model", str(path), "--data", str(data), "--out", str(out), "--version", "1.1.0"]
    args += ["--steps", "2", "--batch", "4", "--images", "10"]
    result = subprocess.run(
        [sys.executable, "-m", "model_build", "dyadic-finetune", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert json.loads(lines[0])["step"] == 0
    rescaled = re.search(r"(\d+) activations rescaled", lines[-1])
    assert rescaled and int(rescaled.group(1)) >= 1, lines[-1]  # MobileNetV2's expansions
    served = Model.load(out)
    assert served.version == "1.1.0" and served.input_size == (32, 32)
    np.testing.assert_array_equal(
        served.predict(images), Model.load(out, reference=True).predict(images)
    )
    # Beside it, what the model card says about the fine-tune (file names, never paths).
    report = json.loads((tmp_path / "new.finetune.json").read_text())
    source = Model.load(path)
    assert report["from"] == {"file": "m.int8.onnx", "version": "1.0.0", "sha": source.sha}
    assert report["to"] == {"file": "new.int8.onnx", "version": "1.1.0", "sha": served.sha}
    assert (report["steps"], report["batch"], report["images_per_class"]) == (2, 4, 10)
    assert report["training_images"] == 20 and report["rescaled"] == int(rescaled.group(1))
    assert report["dense_inputs_7bit"] >= 1 and report["seconds"] > 0
    assert str(tmp_path) not in json.dumps({k: v for k, v in report.items() if k != "data"})
