"""``pair-order``: no U8S8 weight pair can saturate, and reordering alone changes no result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from media_classifier.inference.model import MODELS_DIR, U8S8_PAIRS_KEY, U8S8_PAIRS_VALUE
from model_build import cpuid_mask
from model_build.cpu_check import sample_inputs
from model_build.distill import narrowed_inputs
from model_build.narrow import NARROW_KEY, dense_input_quantizers, narrow_file
from model_build.pair_order import (
    PAIR_BOUND,
    best_order,
    clip_pairs,
    order_file,
    order_pairs,
    pair_excess,
    unsafe_layers,
)
from model_build.qsim import activation_params

#: The ImageNet file as shipped in 1.0.0: 8-bit activations into every dense layer.
EIGHT_BIT = Path(__file__).parent / "data" / "imagenet_mobilenet_v2-1.0.0.int8.onnx"
pytestmark = pytest.mark.slow


def test_only_same_sign_pairs_above_the_bound_count() -> None:
    w = np.array([[127, 1, 100, 29, 100, 30, -90, -50, 127, -127, 5]], dtype=np.int8)
    # pairs: (127, 1) 128 fits; (100, 29) 129 exceeds by 1; (100, 30) by 2; (-90, -50) by 12;
    # (127, -127) opposite signs fit; (5, padding) fits.
    assert pair_excess(w).tolist() == [[0, 1, 2, 12, 0, 0]]


def test_clipping_brings_each_pair_to_the_bound_and_leaves_the_others() -> None:
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(64, 33)).astype(np.int8)
    clipped, count = clip_pairs(w)
    assert count == int((pair_excess(w) > 0).sum()) > 0
    assert not pair_excess(clipped).any()
    fits = np.repeat(pair_excess(w) == 0, 2, axis=1)[:, : w.shape[1]]
    np.testing.assert_array_equal(clipped[fits], w[fits])
    assert (np.sign(clipped) == np.sign(w))[~fits].all()  # scaled down, never flipped


def test_the_order_finds_a_pairing_of_no_excess_where_one_exists() -> None:
    """Channels that fit only with one hidden partner each: the matching must find them all."""
    rng = np.random.default_rng(1)
    n = 40
    partner = rng.permutation(n).reshape(-1, 2)
    cost = rng.uniform(1, 10, size=(n, n))
    cost = (cost + cost.T) / 2
    for i, j in partner:
        cost[i, j] = cost[j, i] = 0
    order = best_order(cost)
    assert sorted(order.tolist()) == list(range(n))
    assert sum(cost[order[k], order[k + 1]] for k in range(0, n, 2)) == 0


def _stream(path: Path) -> set[str]:
    """The dense inputs a stream-narrowed student gets at 7 bits (``distill --narrow stream``)."""
    model = onnx.load(str(path))
    dense = [q.input[0] for q, _ in dense_input_quantizers(model)]
    return set(narrowed_inputs(dense, activation_params(path), "stream"))


@pytest.fixture(scope="module")
def stream_narrowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped 8-bit ImageNet file with 7 bits on the residual stream and pooled features:
    its other dense inputs (ReLU outputs) are left for pair-order."""
    out = tmp_path_factory.mktemp("pairs") / "stream.onnx"
    narrowed = narrow_file(EIGHT_BIT, out, None, only=_stream(EIGHT_BIT))
    assert len(narrowed) == 17
    return out


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return sample_inputs((224, 224), "center_crop", frames=4)


def _probs(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return np.concatenate(
        [session.run(["probabilities"], {"image": x[i : i + 8]})[0] for i in range(0, len(x), 8)]
    )


def test_reordering_alone_gives_the_same_results_bit_for_bit(
    stream_narrowed: Path, images: np.ndarray
) -> None:
    """Integer sums do not depend on their order: an exact CPU (this one) sees no change."""
    model = onnx.load(str(stream_narrowed))
    report = order_pairs(model, clip=False)
    changed = [g for g in report.groups if g["excess"][1] < g["excess"][0]]
    assert len(changed) >= 10, report.groups  # the channels really moved
    assert report.unsafe  # what clipping is for: some pairs no order can separate
    np.testing.assert_array_equal(_probs(model, images), _probs(stream_narrowed, images))


@pytest.fixture(scope="module")
def ordered(stream_narrowed: Path) -> Path:
    out = stream_narrowed.with_name("ordered.onnx")
    report = order_file(stream_narrowed, out, "9.9.9")
    assert not report.unsafe and 0 < report.clipped < 1000, report
    return out


def test_an_ordered_file_says_so_and_every_dense_layer_fits(
    stream_narrowed: Path, ordered: Path
) -> None:
    assert unsafe_layers(onnx.load(str(stream_narrowed)))  # 8-bit ReLU inputs before
    model = onnx.load(str(ordered))
    assert unsafe_layers(model) == []
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[U8S8_PAIRS_KEY] == U8S8_PAIRS_VALUE and meta["version"] == "9.9.9"
    assert NARROW_KEY not in meta  # not every dense input has 7 bits
    assert PAIR_BOUND * 255 <= 32_767


def test_a_file_that_can_still_saturate_is_not_marked(tmp_path: Path) -> None:
    """All 8-bit inputs: the residual stream's pairs saturate in any order, so clipping them
    all would be needed; the unclipped file must not claim to fit."""
    model = onnx.load(str(EIGHT_BIT))
    report = order_pairs(model, clip=False)
    assert report.unsafe
    assert U8S8_PAIRS_KEY not in {p.key for p in model.metadata_props}


SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
from model_build.cpu import describe
x = np.load(sys.argv[2])
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
np.save(sys.argv[3], session.run(["probabilities"], {"image": x})[0])
print(describe()["int8_kernels"])
"""


def _avx2_probs(path: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    """Plain U8S8 (no serving options) on ONNX Runtime's AVX2 kernels, natively (CPUID mask)."""
    np.save(tmp / "x.npy", x)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), str(tmp / "x.npy"), str(tmp / "p.npy")],
        capture_output=True,
        text=True,
        env=cpuid_mask.environ(),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "avx2", proc.stdout
    return np.load(tmp / "p.npy")


@pytest.mark.skipif(cpuid_mask.unavailable_reason() is not None, reason="no CPUID mask here")
def test_avx2_u8s8_kernels_give_this_cpus_answers_once_ordered(
    stream_narrowed: Path, ordered: Path, images: np.ndarray, tmp_path: Path
) -> None:
    """The kernels' pairing is what this module assumes: before ordering the AVX2 U8S8 kernels
    saturate (answers move), after it they give this CPU's answers (float rounding only)."""
    before = np.abs(
        _avx2_probs(stream_narrowed, images, tmp_path) - _probs(stream_narrowed, images)
    )
    after = np.abs(_avx2_probs(ordered, images, tmp_path) - _probs(ordered, images))
    assert before.max() > 1e-3, before.max()
    assert after.max() <= 1e-5, after.max()


def test_every_shipped_file_that_says_its_pairs_fit_has_no_pair_that_can_saturate() -> None:
    """Serving trusts the metadata (``needs_exact_int8``); this holds it to the weights."""
    marked = []
    for path in sorted(MODELS_DIR.glob("*.int8.onnx")):
        model = onnx.load(str(path))
        if {p.key: p.value for p in model.metadata_props}.get(U8S8_PAIRS_KEY) == U8S8_PAIRS_VALUE:
            marked.append(path.name)
            assert unsafe_layers(model) == [], path.name
    assert "imagenet_mobilenet_v2.int8.onnx" in marked, marked


def _mlp(tmp: Path) -> tuple[Path, np.ndarray]:
    """int8 QDQ two-layer perceptron: a Gemm without transB writes 24 channels, ReLU, a Gemm
    with transB reads them. Large weights, so many neighbouring pairs exceed the bound."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    rng = np.random.default_rng(2)
    w1 = rng.normal(0, 1, (16, 24)).astype(np.float32)  # [in, out]: transB = 0
    w2 = rng.normal(0, 1, (10, 24)).astype(np.float32)  # [out, in]: transB = 1
    w2[:, :4] *= 4  # a few heavy input channels: pairs of them exceed the bound
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=0),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(rng.normal(0, 0.1, 24).astype(np.float32), "b1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "b2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    fp32, int8 = tmp / "mlp.onnx", tmp / "mlp.int8.onnx"
    onnx.save(model, str(fp32))
    x = rng.normal(0, 1, (64, 16)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": x[i : i + 8]} for i in range(0, len(x), 8)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    quantize_static(str(fp32), str(int8), Reader(), per_channel=True, weight_type=QuantType.QInt8)
    return int8, x


def test_a_gemm_writing_the_channels_is_reordered_on_its_output_axis(tmp_path: Path) -> None:
    path, x = _mlp(tmp_path)
    model = onnx.load(str(path))
    report = order_pairs(model, clip=False)
    hidden = [g for g in report.groups if g["channels"] == 24]
    assert hidden == [{"channels": 24, "excess": [hidden[0]["excess"][0], 0]}], report.groups
    assert hidden[0]["excess"][0] > 0  # the file order had pairs above the bound

    def run(m: onnx.ModelProto) -> np.ndarray:
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(["y"], {"x": x})[0]

    np.testing.assert_array_equal(run(model), run(onnx.load(str(path))))
