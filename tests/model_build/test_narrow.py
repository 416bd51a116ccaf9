"""``narrow-inputs``: 7-bit activations into the dense layers, nothing else changed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from media_classifier.inference import model as model_module
from media_classifier.inference.model import MODELS_DIR, Model
from model_build.narrow import NARROW_KEY, dense_input_quantizers, narrow_file

#: The ImageNet file as shipped in 1.0.0: 8-bit activations into every dense layer.
EIGHT_BIT = Path(__file__).parent / "data" / "imagenet_mobilenet_v2-1.0.0.int8.onnx"
FASHION = MODELS_DIR / "fashion_mnist_mobilenet_v2.int8.onnx"


def _params(model: onnx.ModelProto) -> dict[str, tuple[float, int]]:
    """Each dense input's (scale, zero point), by the tensor its QuantizeLinear writes."""
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {
        q.output[0]: (float(arrays[q.input[1]]), int(arrays[q.input[2]]))
        for q, _ in dense_input_quantizers(model)
    }


@pytest.fixture(scope="module")
def narrowed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("narrow") / "m.int8.onnx"
    return out, narrow_file(EIGHT_BIT, out, "9.9.9")


def test_each_dense_input_gets_twice_the_scale_and_half_the_zero_point(
    narrowed: tuple[Path, list[str]],
) -> None:
    out, names = narrowed
    before, after = _params(onnx.load(str(EIGHT_BIT))), _params(onnx.load(str(out)))
    assert sorted(names) == sorted(before) == sorted(after) and len(names) == 32
    for name, (scale, zero) in before.items():
        assert after[name] == (pytest.approx(2 * scale, rel=1e-7), round(zero / 2)), name


def test_nothing_else_changes(narrowed: tuple[Path, list[str]]) -> None:
    """Same nodes (no requantization added), same weights; depthwise inputs keep 8 bits."""
    out = narrowed[0]
    old, new = onnx.load(str(EIGHT_BIT)), onnx.load(str(out))
    assert Counter(n.op_type for n in old.graph.node) == Counter(n.op_type for n in new.graph.node)
    old_arrays = {i.name: numpy_helper.to_array(i) for i in old.graph.initializer}
    for init in new.graph.initializer:
        if init.name in old_arrays:
            np.testing.assert_array_equal(numpy_helper.to_array(init), old_arrays[init.name])
    producers = {o: n for n in new.graph.node for o in n.output}
    depthwise_scales = [
        producers[n.input[0]].input[1]
        for n in new.graph.node
        if n.op_type == "Conv"
        and any(a.name == "group" and a.i > 1 for a in n.attribute)
        and producers[n.input[0]].op_type == "DequantizeLinear"  # the first ones run in float
    ]
    assert len(depthwise_scales) == 15
    assert not any(s.endswith("_scale7") for s in depthwise_scales), depthwise_scales


def _fused(path: Path) -> Counter:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(path.with_suffix(".optimized.onnx"))
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def test_every_layer_stays_fused_into_an_integer_kernel(
    narrowed: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """A bias left at the old scale would make ONNX Runtime run the layer in float."""
    source = tmp_path / "source.onnx"
    source.write_bytes(EIGHT_BIT.read_bytes())
    before, after = _fused(source), _fused(narrowed[0])
    assert after["QLinearConv"] == before["QLinearConv"] > 40, (before, after)
    assert after["Conv"] == before["Conv"], (before, after)  # its float prefix only
    shipped = tmp_path / FASHION.name
    shipped.write_bytes(FASHION.read_bytes())
    ops = _fused(shipped)
    assert ops["Conv"] == 0 and ops["QLinearConv"] == 52, ops


def test_the_file_says_so_is_stamped_and_is_served_by_u8s8_everywhere(
    narrowed: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = narrowed
    monkeypatch.setattr(model_module, "u8s8_saturates", lambda: True)
    model = Model.load(out, threads=1)  # checks the stamped sha
    meta = model.session.get_modelmeta().custom_metadata_map
    assert meta[NARROW_KEY] == "7" and model.version == "9.9.9"
    assert model.exact_int8 is False
    assert Model.load(EIGHT_BIT, threads=1).exact_int8 is True


def test_a_narrowed_file_is_not_narrowed_twice(
    narrowed: tuple[Path, list[str]], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit, match="already narrowed"):
        narrow_file(narrowed[0], tmp_path / "twice.onnx", None)


def test_the_shipped_fashion_file_has_every_dense_input_narrowed() -> None:
    model = onnx.load(str(FASHION))
    assert {p.key: p.value for p in model.metadata_props}[NARROW_KEY] == "7"
    quantizers = dense_input_quantizers(model)
    assert len(quantizers) == 36
    assert all(q.input[1] == f"{q.output[0]}_scale7" for q, _ in quantizers)
