"""The model contract: metadata, uint8 NHWC input, in-graph normalization and softmax, int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from model_build.contract import ModelMeta
from model_build.onnx_export import export_onnx, read_metadata, run_onnx, run_torch, session
from model_build.quantize import METHODS, even_batch, quantize_int8
from model_build.stamp import check
from model_build.wrapper import Normalize

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def tiny_net(n_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, n_classes),
    ).eval()


META = ModelMeta("tiny", "0.1.0", ("a", "b", "c"), "squash", (16, 20))


def test_meta_props_round_trip() -> None:
    props = META.props()
    assert props["labels"] == '["a", "b", "c"]' and props["task"] == "classification"
    assert ModelMeta.from_props(props, (16, 20)) == META


@pytest.mark.parametrize("bad", [{"resize": "stretch"}, {"labels": ("a", "a")}])
def test_meta_rejects_bad_values(bad: dict) -> None:
    kwargs = {
        "name": "x",
        "version": "1",
        "labels": ("a", "b"),
        "resize": "squash",
        "input_size": (8, 8),
        **bad,
    }
    with pytest.raises(ValueError):
        ModelMeta(**kwargs)


def test_normalize_matches_definition() -> None:
    x = torch.randint(0, 256, (2, 3, 4, 4)).float()
    want = (x / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(Normalize(MEAN, STD)(x), want, atol=1e-5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, Path]:
    tmp = tmp_path_factory.mktemp("contract")
    net = tiny_net()
    fp32 = export_onnx(net, META, MEAN, STD, tmp / "tiny.fp32.onnx")
    calib = np.random.default_rng(0).integers(0, 256, (16, 16, 20, 3), dtype=np.uint8)
    int8 = quantize_int8(fp32, tmp / "tiny.int8.onnx", calib)
    return net, fp32, int8


def test_exported_signature_and_metadata(exported: tuple[nn.Module, Path, Path]) -> None:
    _, fp32, int8 = exported
    for path in (fp32, int8):
        assert read_metadata(path) == META
        model = onnx.load(str(path))
        (inp,) = model.graph.input
        dims = inp.type.tensor_type.shape.dim
        assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [16, 20, 3]
        assert [o.name for o in model.graph.output] == ["probabilities", "embedding"]
        props = {p.key: p.value for p in model.metadata_props}
        assert props["embedding"] == "l2" and "duplicate_threshold" not in props


def test_each_exported_file_carries_its_own_content_hash(
    exported: tuple[nn.Module, Path, Path],
) -> None:
    """The identity the functions check at load: fp32 and int8 differ, each is its own."""
    _, fp32, int8 = exported
    shas = [check(path) for path in (fp32, int8)]
    assert all(shas) and shas[0] != shas[1]
    props = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert props["sha"] == shas[1]  # not the fp32 file's, which quantize_int8 copied


def test_probabilities_dynamic_batch_and_parity(exported: tuple[nn.Module, Path, Path]) -> None:
    net, fp32, int8 = exported
    x = np.random.default_rng(1).integers(0, 256, (5, 16, 20, 3), dtype=np.uint8)
    ref = run_torch(net, MEAN, STD, x)
    for path, tol in ((fp32, 1e-5), (int8, 0.1)):
        for n in (1, 5):
            p = run_onnx(session(path), x[:n])
            assert p.shape == (n, 3)
            assert np.allclose(p.sum(1), 1, atol=1e-5)
            assert np.abs(p - ref[:n]).max() < tol


def test_int8_is_qdq_with_float_pre_and_post(exported: tuple[nn.Module, Path, Path]) -> None:
    _, _, int8 = exported
    nodes = onnx.load(str(int8)).graph.node
    ops = [n.op_type for n in nodes]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # Normalization and softmax stay float: nothing quantizes the softmax output.
    softmax = next(n for n in nodes if n.op_type == "Softmax")
    assert not any(softmax.output[0] in n.input for n in nodes)
    weights_dq = [n for n in nodes if n.op_type == "DequantizeLinear" and "weight" in n.name]
    assert weights_dq, "weights should be stored quantized"


def test_percentile_narrows_activation_ranges(
    exported: tuple[nn.Module, Path, Path], tmp_path: Path
) -> None:
    """A lower calibration percentile clips more outliers: activation scales must shrink.

    Guards the ``percentile`` argument that the default model's candidate list relies on.
    """
    _, fp32, _ = exported
    calib = np.random.default_rng(0).integers(0, 256, (16, 16, 20, 3), dtype=np.uint8)

    def act_scales(pct: float) -> dict[str, float]:
        path = quantize_int8(
            fp32, tmp_path / f"p{pct}.onnx", calib, method="percentile", percentile=pct
        )
        model = onnx.load(str(path))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        return {
            n.input[0]: float(inits[n.input[1]])
            for n in model.graph.node
            if n.op_type == "QuantizeLinear" and inits[n.input[1]].ndim == 0
        }

    wide, narrow = act_scales(100.0), act_scales(90.0)
    assert wide.keys() == narrow.keys() and wide
    assert all(narrow[k] <= wide[k] for k in wide)
    assert any(narrow[k] < 0.9 * wide[k] for k in wide)


@pytest.mark.parametrize("count", [1, 7, 17, 23, 100])
def test_every_calibration_method_takes_any_number_of_images(
    exported: tuple[nn.Module, Path, Path], tmp_path: Path, count: int
) -> None:
    """The histogram calibrator stacks all batches: a short last batch used to crash it."""
    _, fp32, _ = exported
    calib = np.random.default_rng(count).integers(0, 256, (count, 16, 20, 3), dtype=np.uint8)
    for method in METHODS:
        assert quantize_int8(fp32, tmp_path / f"{method}.onnx", calib, method=method).is_file()


@pytest.mark.parametrize(("count", "batch"), [(512, 16), (510, 15), (509, 1), (24, 12), (3, 3)])
def test_calibration_batches_divide_the_image_count(count: int, batch: int) -> None:
    assert even_batch(count) == batch
