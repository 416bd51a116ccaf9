"""``exact_float``: a float prefix that ONNX Runtime's optimized (NCHWc) and reference
executions compute alike, bit for bit, and the simulation ``distill --dyadic`` trains through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from media_classifier.inference import identity
from media_classifier.inference.model import INT8_SCALES_DYADIC, INT8_SCALES_KEY, Model
from model_build import exact_float, qsim, samples
from model_build.distill import narrowed_inputs, simulation_scheme, student_model
from model_build.dyadic import dyadic_file, rescalable, residual_additions
from model_build.narrow import dense_input_quantizers, narrow_file
from model_build.onnx_export import export_onnx, export_serving
from model_build.pretrained import make_exact
from model_build.quantize import conv_prefix, mean_kl, quantize_int8
from model_build.serving import prepare_image

from .tiny_mobile import MEAN, META, SIZE, STD, Block, smooth_images

#: The ImageNet file as shipped in 1.0.0: its first six convolutions in float.
EIGHT_BIT = Path(__file__).parent / "data" / "imagenet_mobilenet_v2-1.0.0.int8.onnx"


def test_wide_weights_sum_to_whole_units_below_2_24_in_any_order() -> None:
    """The property the prefix rests on: every product and partial sum a whole number of one
    unit below 2**24, so float32 adds them exactly whatever the kernel's order."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)
    w[3] *= 40  # a channel of large weights gets its own, coarser unit
    b = rng.normal(0, 2, 16).astype(np.float32)
    step, code = 2.0**-6, 255
    new_w, new_b = exact_float.wide_weights(w, b, step, code)
    terms = 8 * 3 * 3
    largest = exact_float.largest_weight(terms, code)
    assert largest == 456  # 2**23 / (72 x 255): a 10-bit weight and sign
    for c in range(16):
        unit = exact_float.weight_units(w[c : c + 1], largest)[0]
        m = new_w[c].astype(np.float64) / unit
        assert np.array_equal(m, np.round(m))
        assert terms * code * np.abs(m).max() + abs(new_b[c] / (step * unit)) < 2**24
        # as fine as the budget allows: within half a unit, the unit within a factor of two
        # of the channel's largest weight over the largest integer
        assert np.abs(new_w[c] - w[c]).max() <= unit / 2 + 1e-7
        assert unit <= 2 * np.abs(w[c]).max() / largest
    x = rng.integers(0, code + 1, terms).astype(np.float64) * step
    products = (new_w[5].ravel().astype(np.float64) * x).astype(np.float32)
    exact = float(np.sum(products.astype(np.float64))) + float(new_b[5])
    for order in (np.arange(terms), rng.permutation(terms), np.arange(terms)[::-1]):
        total = np.float32(new_b[5])
        for k in order:
            total = np.float32(total + products[k])
        assert float(total) == exact


@pytest.mark.parametrize(
    ("channels", "kernel", "group", "zero_point"),
    [(3, 3, 1, 0), (16, 3, 16, 0), (16, 1, 1, 37)],
    ids=["stem", "depthwise", "pointwise"],
)
def test_a_writer_rounds_its_sum_to_the_step_half_to_even_in_both_executions(
    channels: int, kernel: int, group: int, zero_point: int
) -> None:
    """The mechanism, on its own: a bias of ``MAGIC`` steps rounds the exact sum once, half
    to even (ties made on purpose), whether ONNX Runtime's blocked kernels or its plain ones
    add it; the ``HardSigmoid`` hands on the codes offset by the zero point and clipped to
    ``0..2**bits``. Fails if a kernel added the bias before the products."""
    rng = np.random.default_rng(channels + kernel)
    bits, step, out = 9, 2.0**-4, 16
    w = rng.integers(-40, 41, (out, channels // group, kernel, kernel)) * 2.0**-5  # ties
    x = rng.integers(0, 256, (2, channels, 24, 24)).astype(np.float32)
    b = rng.integers(-300, 301, out) * 2.0**-5
    r = exact_float.Rounding(1.0, 1.0, 1.0, 255, output_step=step)
    fw, fb, _ = exact_float.fused(w.astype(np.float32), b.astype(np.float32), r)
    unit = 2.0**-bits
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node(
                "Conv", ["x", "w", "b"], ["s"], group=group, pads=[kernel // 2] * 4
            ),
            onnx.helper.make_node(
                "HardSigmoid",
                ["s"],
                ["y"],
                alpha=unit / step,
                beta=(zero_point - exact_float.MAGIC) * unit,
            ),
        ],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, channels, 24, 24])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(fw, "w"), onnx.numpy_helper.from_array(fb, "b")],
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=9
    )
    on_step = np.round(b / step) * step  # the bias as the file holds it, less MAGIC
    sums = torch.nn.functional.conv2d(
        torch.from_numpy(x).double(),
        torch.from_numpy(w).double(),
        torch.from_numpy(on_step),
        padding=kernel // 2,
        groups=group,
    ).numpy()
    assert np.mean(np.abs(sums / step % 1 - 0.5) < 1e-9) > 0.01  # ties happen
    codes = np.clip(np.round(sums / step) + zero_point, 0, 2**bits)  # numpy: half to even
    for level in (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    ):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], codes * unit)


def test_compensation_is_what_a_shifted_input_adds_away_from_the_borders() -> None:
    """Readers take off what their input's bias rounding adds on average: for a dense and a
    depthwise convolution, exactly the output of a constant input of the shift (interior)."""
    rng = np.random.default_rng(3)
    for group in (1, 8):
        w = rng.normal(size=(8, 8 // group, 3, 3))
        shift = rng.normal(size=8) * 0.01
        x = torch.from_numpy(np.broadcast_to(shift.reshape(1, 8, 1, 1), (1, 8, 5, 5)).copy())
        moved = torch.nn.functional.conv2d(x, torch.from_numpy(w), groups=group).numpy()
        np.testing.assert_allclose(moved[0, :, 1, 1], exact_float.compensation(w, shift))


@pytest.mark.parametrize("pads", [0, 1])
def test_a_signed_link_is_refused_where_padding_would_read_its_offset(pads: int) -> None:
    """A link with a zero point reaches its readers as codes offset by it, so zero padding
    would read -zero_point steps: refused, not silently wrong; without padding it is fine."""
    rng = np.random.default_rng(0)
    weights = [
        onnx.numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "wa"),
        onnx.numpy_helper.from_array(rng.normal(size=(4, 4, 3, 3)).astype(np.float32), "wb"),
    ]
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Conv", ["x", "wa"], ["t"], pads=[1] * 4, name="a"),
            onnx.helper.make_node("Conv", ["t", "wb"], ["y"], pads=[pads] * 4, name="b"),
        ],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        weights,
    )
    model = onnx.helper.make_model(graph)
    plan = {"t": (-4.0, 4.0, 8)}  # zero point 128
    if pads:
        with pytest.raises(ValueError, match="padding"):
            exact_float.rewrite(model, plan)
    else:
        assert exact_float.rewrite(model, plan) == 2


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, np.ndarray]:
    """Real photos as serving prepares them: 6 to plan on, the others to check."""
    x = np.stack([prepare_image(s.data, (224, 224), "center_crop") for s in samples.photos()])
    return x[:6], x[6:]


@pytest.fixture(scope="module")
def exact_file(photos: tuple, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    plan = exact_float.plan(onnx.load(str(EIGHT_BIT)), photos[0])
    out = tmp_path_factory.mktemp("exact") / "e.onnx"
    dyadic_file(EIGHT_BIT, out, "9.9.9", prefix=plan)
    return out, plan


def test_a_float_prefix_made_exact_computes_the_reference_to_the_bit(
    exact_file: tuple, photos: tuple, tmp_path: Path
) -> None:
    """Five float convolutions after the stem, NCHWc kernels and all: not one bit differs on
    photos it was not planned on; with the prefix left as it was, they do."""
    path, plan = exact_file
    x = photos[1]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, ["CPUExecutionProvider"])
    # the rounding went into the blocked convolutions (their activation): no op of its own
    # takes the prefix out of ONNX Runtime's NCHWc layout (which cost 1.9x the time)
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert "HardSigmoid" not in ops and "Round" not in ops
    served = Model.load(path).predict(x)
    np.testing.assert_array_equal(served, Model.load(path, reference=True).predict(x))
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}[
        INT8_SCALES_KEY
    ] == INT8_SCALES_DYADIC
    assert len(plan) == 5 and all(b in exact_float.BITS for _, _, b in plan.values())
    plain = tmp_path / "p.onnx"
    dyadic_file(EIGHT_BIT, plain, None, strict=False)
    assert (
        np.abs(Model.load(plain).predict(x) - Model.load(plain, reference=True).predict(x)).max()
        > 0
    )


def test_the_prefix_costs_little_of_the_float_answers(exact_file: tuple, photos: tuple) -> None:
    """The same file with only its int8 part made dyadic is the yardstick: quantizing the
    prefix's tensors and widening its weights moves the photos' probabilities a little."""
    path, _ = exact_file
    model = onnx.load(str(path))
    reference = exact_float.reference_session(model, [model.graph.output[0].name])
    ours = reference.run(None, {reference.get_inputs()[0].name: photos[1]})[0]
    float_prefix = onnx.load(str(EIGHT_BIT))
    theirs = exact_float.reference_session(float_prefix, [float_prefix.graph.output[0].name])
    base = theirs.run(None, {theirs.get_inputs()[0].name: photos[1]})[0]
    assert mean_kl(base, ours) < 0.05
    assert (base.argmax(1) == ours.argmax(1)).mean() >= 0.8


def test_onnx_runtime_would_quantize_float_weights_between_qdq_pairs(tmp_path: Path) -> None:
    """Why a link's rounding is its writer's and not a QuantizeLinear/DequantizeLinear pair:
    ONNX Runtime fuses DQ -> Conv(float weights) -> Q into an int8 kernel of its own making."""
    model = onnx.load(str(EIGHT_BIT))
    first, second = exact_float.links(model)[:2]  # the stem's output, the depthwise output
    scale = onnx.helper.make_tensor("s", onnx.TensorProto.FLOAT, [], [2.0**-6])
    zero = onnx.helper.make_tensor("z", onnx.TensorProto.UINT8, [], [0])
    model.graph.initializer.extend([scale, zero])
    for link in (first, second):
        t = link.tensor
        q = onnx.helper.make_node("QuantizeLinear", [t, "s", "z"], [f"{t}_q"], name=f"{t}_Q")
        dq = onnx.helper.make_node("DequantizeLinear", [f"{t}_q", "s", "z"], [f"{t}_dq"])
        at = list(model.graph.node).index(link.clip) + 1
        model.graph.node.insert(at, dq)
        model.graph.node.insert(at, q)
        for reader in link.readers:
            reader.input[0] = f"{t}_dq"
    reader = first.readers[0]  # DQ -> Conv (float weights) -> Clip -> Q
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    optimized = onnx.load(options.optimized_model_filepath)
    assert any(n.op_type == "QLinearConv" and reader.name in n.name for n in optimized.graph.node)


class _Plain(nn.Module):
    """An inverted-residual block without its residual (MobileNetV2's ``features.1``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Sequential(
                nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6()
            ),
            nn.Conv2d(8, 8, 1, bias=False),
            nn.BatchNorm2d(8),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Prefixed(nn.Module):
    """MobileNetV2's opening in miniature: stem, a block without residual (depthwise, then
    projection), a residual block, a 1x1, pooling, classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()),
            _Plain(),
            Block(),
            nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def _prefixed() -> nn.Module:
    torch.manual_seed(0)
    net = _Prefixed().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
        net.classifier[1].weight.mul_(40)  # answers that depend on the picture
    return net


def test_the_file_computes_what_the_simulation_trains_through(tmp_path: Path) -> None:
    """``distill --dyadic`` with a float prefix: the links quantized to their bits and the
    weights widened in the simulation, as the file holds them; the file is exact."""
    net = _prefixed()
    calib, test = smooth_images(24, 0), smooth_images(16, 1)
    fp32 = export_onnx(net, META, MEAN, STD, tmp_path / "t.onnx")
    prefix = conv_prefix(fp32, 3)
    layout = quantize_int8(fp32, tmp_path / "l.onnx", calib, keep_float=prefix)
    layout_model = onnx.load(str(layout))
    plan = exact_float.prefix_plan(layout_model, calib)
    assert plan is not None and len(plan) == 2  # the stem's output, the depthwise output
    params = qsim.activation_params(layout)
    scheme = {
        "dyadic": True,
        "additions": residual_additions(layout_model),
        "rescaled": rescalable(layout_model),
    }
    # the prefix's last output (its first int8 tensor), as simulated and as the file has it
    end = next(t for t in params if t.startswith(prefix[-1].rpartition("/")[0] + "/"))

    def simulate(with_prefix: bool) -> tuple[nn.Module, np.ndarray, np.ndarray]:
        serving = student_model(net, MEAN, STD, SIZE)
        qsim.attach(serving, params, prefix, **scheme)
        if with_prefix:
            qsim.attach_exact_prefix(serving, plan, exact_float.roundings(layout_model, plan))
        scopes = {qsim.onnx_scope(n): m for n, m in serving.named_modules() if n}
        seen: list[torch.Tensor] = []
        scopes[end.rpartition("/")[0]].register_forward_hook(lambda _m, _i, o: seen.append(o))
        with torch.no_grad():
            probabilities = serving(torch.from_numpy(test)).numpy()
        return serving, probabilities, seen[0].numpy()

    serving, simulated, sim_end = simulate(True)
    _, _, plain_end = simulate(False)
    scales = qsim.learned_params(serving, params, **scheme)
    qsim.strip(serving)
    exported = export_serving(serving, META, tmp_path / "s.fp32.onnx")
    int8 = tmp_path / "s.onnx"
    quantize_int8(exported, int8, calib, keep_float=prefix, activation_overrides=scales)
    dyadic_file(int8, int8, None, prefix=plan)
    served = Model.load(int8).predict(test)
    np.testing.assert_array_equal(served, Model.load(int8, reference=True).predict(test))
    assert np.abs(served - simulated).max() < 0.02
    model = onnx.load(str(int8))
    dq = next(
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0].startswith(end)
    )
    session = exact_float.reference_session(model, [dq])
    file_end = session.run(None, {session.get_inputs()[0].name: test})[0]
    step = float(np.min(np.diff(np.unique(file_end))))
    # the simulation lands on the file's codes (but for float rounding next to a boundary);
    # without the prefix's rounding it would train on others, several times as many
    assert np.mean(np.abs(sim_end - file_end) < step / 2) > 0.99
    simulated_off = np.mean(np.abs(sim_end - file_end) >= step / 2)
    assert simulated_off < 0.01
    assert np.mean(np.abs(plain_end - file_end) >= step / 2) > 3 * simulated_off


def test_export_makes_a_7_bit_float_prefix_student_exact_by_its_plan(tmp_path: Path) -> None:
    """What ``export-pretrained --student`` does with a float-prefix ``distill --dyadic
    --dense-input-bits 7`` student (``make_exact``): refused without the checkpoint's plan
    (its float sums would depend on the kernels), exact and marked with it."""
    net, calib, test = _prefixed(), smooth_images(24, 0), smooth_images(16, 1)
    fp32 = export_onnx(net, META, MEAN, STD, tmp_path / "t.onnx")
    prefix = conv_prefix(fp32, 3)
    layout = quantize_int8(fp32, tmp_path / "l.onnx", calib, keep_float=prefix)
    layout_model = onnx.load(str(layout))
    params = qsim.activation_params(layout)
    dense = [q.input[0] for q, _ in dense_input_quantizers(layout_model)]
    seven = narrowed_inputs(dense, params, "all")
    # as distill reads it from its --init file: a narrowed one (7-bit tensors are not rescaled)
    narrowed = narrow_file(layout, tmp_path / "n.onnx", None, None)
    assert sorted(narrowed)
    scheme = simulation_scheme(params, seven, True, None, onnx.load(str(tmp_path / "n.onnx")))
    plan = exact_float.prefix_plan(layout_model, calib)
    assert plan is not None
    serving = student_model(net, MEAN, STD, SIZE)
    qsim.attach(serving, params, prefix, **scheme)
    qsim.attach_exact_prefix(serving, plan, exact_float.roundings(layout_model, plan))
    scales = qsim.learned_params(serving, params, **scheme)
    qsim.strip(serving)
    exported = export_serving(serving, META, tmp_path / "s.fp32.onnx")
    path = quantize_int8(
        exported, tmp_path / "s.onnx", calib, keep_float=prefix, activation_overrides=scales
    )
    refused = tmp_path / "r.onnx"
    refused.write_bytes(path.read_bytes())
    with pytest.raises(SystemExit, match="float convolutions besides the stem"):
        make_exact(refused, refused, seven, dyadic=True)
    make_exact(path, path, seven, dyadic=True, prefix=plan)
    assert identity.metadata(path.read_bytes())[INT8_SCALES_KEY] == INT8_SCALES_DYADIC
    served = Model.load(path).predict(test)
    np.testing.assert_array_equal(served, Model.load(path, reference=True).predict(test))
