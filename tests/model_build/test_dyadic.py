"""``dyadic-scales``: with power-of-two activation scales and 4-bit weight scales, ONNX Runtime's
optimized int8 execution computes the reference's numbers exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch.nn.utils import parametrize

from media_classifier.inference import identity
from media_classifier.inference.model import INT8_SCALES_DYADIC, INT8_SCALES_KEY, Model
from model_build import qsim
from model_build.distill import narrowed_inputs, simulation_scheme, student_model
from model_build.dyadic import (
    WEIGHT_SCALE_BITS,
    dyadic_ceil,
    dyadic_file,
    is_dyadic,
    make_dyadic,
    rescalable,
    rescale_factor,
    residual_additions,
    tie_free,
)
from model_build.narrow import dense_input_quantizers
from model_build.onnx_export import export_onnx, export_serving
from model_build.pair_order import order_file, unsafe_layers
from model_build.pretrained import make_exact
from model_build.quantize import conv_prefix, quantize_int8

from .tiny_mobile import MEAN, META, SIZE, STD, smooth_images, tiny

#: The ImageNet file as shipped in 1.0.0: 8-bit activations, calibrated (not dyadic) scales,
#: its first six convolutions in float.
EIGHT_BIT = Path(__file__).parent / "data" / "imagenet_mobilenet_v2-1.0.0.int8.onnx"


def test_dyadic_ceil_is_the_next_number_with_that_many_bits() -> None:
    rng = np.random.default_rng(0)
    s = (10.0 ** rng.uniform(-6, 1, 1000)).astype(np.float32)
    for bits in (1, 2, WEIGHT_SCALE_BITS):
        d = dyadic_ceil(s, bits)
        assert (d >= s).all() and (d / s < 1 + 2.0 ** (1 - bits) + 1e-6).all()
        assert is_dyadic(d, bits) and np.array_equal(dyadic_ceil(d, bits), d)  # idempotent
        mantissa, _ = np.frexp(d.astype(np.float64))  # d = mantissa * 2**e, mantissa in [0.5, 1)
        assert np.array_equal(mantissa * 2**bits, np.round(mantissa * 2**bits))
    assert dyadic_ceil(np.float32(0.0234375), 1) == np.float32(0.03125)
    assert dyadic_ceil(np.float32(0.25), 1) == np.float32(0.25)
    assert dyadic_ceil(np.float32(1.3), 4) == np.float32(1.375)
    assert not is_dyadic(np.float32(1.3), WEIGHT_SCALE_BITS)


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What ``distill --dyadic`` and ``export-pretrained`` make of the tiny network: the
    simulation's probabilities, the file quantized with the scales it simulated (its stem in
    float, as export-pretrained keeps it), and that file after ``dyadic-scales``."""
    tmp = tmp_path_factory.mktemp("dyadic")
    net, calib, test = tiny(), smooth_images(24, 0), smooth_images(16, 1)
    plain = quantize_int8(export_onnx(net, META, MEAN, STD, tmp / "t.onnx"), tmp / "p.onnx", calib)
    params = qsim.activation_params(plain)
    scheme = {
        "dyadic": True,
        "additions": residual_additions(onnx.load(str(plain))),
        "rescaled": rescalable(onnx.load(str(plain))),
    }
    scheme["lifted"] = qsim.liftable(params, scheme["rescaled"])
    serving = student_model(net, MEAN, STD, SIZE)
    qsim.attach(serving, params, **scheme)
    with torch.no_grad():
        simulated = serving(torch.from_numpy(test)).numpy()
        weights = {
            qsim.onnx_scope(name): mod.weight.numpy()
            for name, mod in serving.named_modules()
            if isinstance(mod, torch.nn.Conv2d) and parametrize.is_parametrized(mod, "weight")
        }
    scales = qsim.learned_params(serving, params, **scheme)
    qsim.strip(serving)
    fp32 = export_serving(serving, META, tmp / "s.fp32.onnx")
    stem = conv_prefix(fp32, 1)
    before = tmp / "s.onnx"
    quantize_int8(fp32, before, calib, keep_float=stem, activation_overrides=scales)
    after = tmp / "d.onnx"
    counts = dyadic_file(before, after, "9.9.9")
    return {"test": test, "simulated": simulated, "before": before, "after": after} | {
        "counts": counts,
        "weights": weights,
    }


def test_optimized_execution_equals_the_reference_to_the_bit(student: dict) -> None:
    """The property itself, served as serving serves it on this CPU: before the pass, float
    sums in another order move the probabilities; after it, not one bit differs."""
    x = student["test"]
    before = Model.load(student["before"]).predict(x)
    assert np.abs(before - Model.load(student["before"], reference=True).predict(x)).max() > 0
    served = Model.load(student["after"]).predict(x)
    np.testing.assert_array_equal(served, Model.load(student["after"], reference=True).predict(x))


def test_the_file_computes_what_the_simulation_trained(student: dict) -> None:
    """``distill --dyadic`` trains through this: weights rounded twice, the stem's too (an int8
    stem there, a float one with int8 values in the file), the padding at whole grey levels,
    and the rescaled tensors' scales free, their layers' weights rounded as rescaled."""
    served = Model.load(student["after"]).predict(student["test"])
    assert np.abs(served - student["simulated"]).max() < 0.02
    # it trained with powers of two, tied around the addition, and the calibrated scales
    # (not powers of two) on the tensors the pass rescales
    assert student["counts"]["activation_scales"] == student["counts"]["addition_scales"] == 0
    assert student["counts"]["rescaled"] >= 1


def test_the_file_holds_dyadic_scales_fusable_biases_and_an_integer_stem(student: dict) -> None:
    """Every activation scale a power of two, every weight scale 4 bits, every int32 bias at
    exactly input scale x weight scale (else ONNX Runtime runs the layer in float), even zero
    points after additions, and a float stem whose weights are int8 steps of a dyadic scale."""
    path = student["after"]
    model = onnx.load(str(path))
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[INT8_SCALES_KEY] == INT8_SCALES_DYADIC and meta["version"] == "9.9.9"
    assert meta["sha"] == identity.content_sha(path.read_bytes())
    layers = 0
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in arrays:
            assert is_dyadic(arrays[n.input[1]], 1), n.input[1]
            if producer[n.input[0]].op_type == "Add":
                assert int(arrays[n.input[2]]) % 2 == 0, n.input[0]
        w = producer.get(n.input[1]) if n.op_type in ("Conv", "Gemm") else None
        if w is None or w.op_type != "DequantizeLinear" or w.input[0] not in arrays:
            continue
        layers += 1
        assert is_dyadic(arrays[w.input[1]], WEIGHT_SCALE_BITS)
        x_scale = arrays[producer[n.input[0]].input[1]]
        bias = producer[n.input[2]]
        np.testing.assert_array_equal(arrays[bias.input[1]], x_scale * arrays[w.input[1]])
    assert layers == student["counts"]["layers"] >= 4
    quantizers = {n.input[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    additions = residual_additions(model)
    assert len(additions) == 1  # the tiny network's one residual block
    for total, inputs in additions:
        assert len(inputs) == 2
        out = arrays[quantizers[total].input[1]]
        # whole-number ratios: the sum has nothing to round (ARM64 rounds ties its own way)
        assert all(arrays[quantizers[t].input[1]] >= out for t in inputs)
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    assert arrays[stem.input[1]].dtype == np.float32
    # an int8 value times a 4-bit scale has at most 7 + 4 significant bits
    mantissa, _ = np.frexp(arrays[stem.input[1]].astype(np.float64))
    assert np.array_equal(mantissa * 2**11, np.round(mantissa * 2**11))
    pads = [arrays[n.input[0]] for n in model.graph.node if n.op_type == "Expand"]
    assert pads and all(np.array_equal(p, np.round(p)) for p in pads)


def test_rescale_factor_takes_a_scale_down_to_a_power_of_two() -> None:
    rng = np.random.default_rng(1)
    for s in (10.0 ** rng.uniform(-6, 1, 500)).astype(np.float32):
        alpha = rescale_factor(float(s))
        assert 0.5 < alpha <= 1.0
        assert is_dyadic(np.float32(np.float64(s) * alpha), 1)
    assert rescale_factor(0.25) == 1.0
    assert rescale_factor(6 / 255) == pytest.approx(2**-6 * 255 / 6)


def test_rescaled_layers_hold_the_simulated_weights_times_alpha(student: dict) -> None:
    """The writer of a rescaled tensor holds the simulated weights times ``alpha``, its readers
    divided by it, to the last bit of the rounding (``qsim._FakeQuantWeight``'s ratio)."""
    before, after = onnx.load(str(student["before"])), onnx.load(str(student["after"]))
    arrays = {i.name: numpy_helper.to_array(i) for i in after.graph.initializer}
    producer = {o: n for n in after.graph.node for o in n.output}
    nodes = {n.name: n for n in after.graph.node}
    scales = qsim.activation_params(student["before"])
    checked = 0
    for tensor, writer, readers in rescalable(before):
        alpha = rescale_factor(scales[tensor][0])
        assert alpha < 1.0  # a calibrated scale: the check below would hold without the ratio
        for layer, factor in [(writer, alpha)] + [(r, 1 / alpha) for r in readers]:
            dq = producer[nodes[layer].input[1]]
            q, scale = arrays[dq.input[0]].astype(np.float64), arrays[dq.input[1]]
            in_file = q * scale.astype(np.float64).reshape(-1, 1, 1, 1)
            simulated = student["weights"][layer.rpartition("/")[0]].astype(np.float64)
            np.testing.assert_allclose(in_file, simulated * factor, rtol=1e-6, atol=1e-12)
            checked += 1
    assert checked >= 2


def test_a_lifted_relu6_output_keeps_a_range_beyond_4(tmp_path: Path) -> None:
    """The last 1x1's ReLU6 output (read by the pooling, so not rescaled) calibrated near 0..8:
    lifted, the simulation and the file clip it at 7.97 (2**-5 x 255); not lifted, a power of
    two caps it at 3.98."""
    net, calib, test = tiny(), smooth_images(24, 0), smooth_images(16, 1)
    plain = quantize_int8(
        export_onnx(net, META, MEAN, STD, tmp_path / "t.onnx"), tmp_path / "p.onnx", calib
    )
    params = qsim.activation_params(plain)
    last = next(t for t in params if "features.2" in t and t.endswith("Clip_output_0"))
    params[last] = (7.5 / 255, 0)
    rescaled = rescalable(onnx.load(str(plain)))
    lifted = qsim.liftable(params, rescaled)
    assert last in lifted and not {t for t, _, _ in rescaled} & set(lifted)
    scheme = {"dyadic": True, "rescaled": rescaled}
    assert qsim.representable(params, params, **scheme)[last][0] == 2**-6
    scheme |= {"additions": residual_additions(onnx.load(str(plain))), "lifted": lifted}
    assert qsim.representable(params, params, **scheme)[last][0] == 2**-5
    serving = student_model(net, MEAN, STD, SIZE)
    qsim.attach(serving, params, **scheme)
    with torch.no_grad():
        simulated = serving(torch.from_numpy(test)).numpy()
    scales = qsim.learned_params(serving, params, **scheme)
    qsim.strip(serving)
    fp32 = export_serving(serving, META, tmp_path / "s.fp32.onnx")
    graph = onnx.load(str(fp32)).graph
    clip = next(n for n in graph.node if n.output[0] == last)
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer} | {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant"
    }
    assert clip.op_type == "Clip" and float(constants[clip.input[2]]) == qsim.LIFTED_MAX
    int8 = tmp_path / "s.onnx"
    quantize_int8(fp32, int8, calib, keep_float=conv_prefix(fp32, 1), activation_overrides=scales)
    dyadic_file(int8, int8, None)
    assert qsim.activation_params(int8)[last][0] == 2**-5
    served = Model.load(int8).predict(test)
    np.testing.assert_array_equal(served, Model.load(int8, reference=True).predict(test))
    assert np.abs(served - simulated).max() < 0.02


def test_distill_reads_the_scheme_from_its_layout_file(student: dict) -> None:
    """``distill --dyadic --layout FILE``: additions and rescaled tensors come from the file,
    every other ReLU6 output is lifted; a layout of other activations is refused."""
    layout = onnx.load(str(student["before"]))
    params = qsim.activation_params(student["before"])
    scheme = simulation_scheme(params, [], True, None, layout)
    assert scheme["additions"] == residual_additions(layout) and scheme["rescaled"]
    inside = {tensor for tensor, _, _ in scheme["rescaled"]}
    relu6 = {t for t, (_, zp) in params.items() if t.endswith("Clip_output_0") and zp == 0}
    assert set(scheme["lifted"]) == relu6 - inside and scheme["lifted"]
    assert simulation_scheme(params, [], False, None, layout) == {
        "narrowed": [],
        "dyadic": False,
        "floors": None,
        "additions": [],
        "rescaled": [],
        "lifted": [],
    }
    fewer = {t: v for t, v in params.items() if t not in inside}
    with pytest.raises(SystemExit, match="other activations"):
        simulation_scheme(fewer, [], True, None, layout)


def test_rescalable_tensors_are_written_and_read_by_int8_convolutions_only(
    student: dict,
) -> None:
    """Inside the blocks (expansions, depthwise outputs), never the residual stream (its scale
    is tied around the addition) nor the pooled features or the float stem's output."""
    model = onnx.load(str(student["before"]))
    found = rescalable(model)
    nodes = {n.name: n for n in model.graph.node}
    stream = {t for total, inputs in residual_additions(model) for t in (total, *inputs)}
    assert found
    for tensor, writer, readers in found:
        assert tensor not in stream and tensor.endswith(("Clip_output_0", "Conv_output_0"))
        assert nodes[writer].op_type == "Conv" and tensor in nodes[writer].output
        assert readers and all(nodes[r].op_type == "Conv" for r in readers)
    stem = next(n for n in model.graph.node if n.op_type == "Conv")  # float: not rescaled
    assert all(writer != stem.name for _, writer, _ in found)


def test_float_layers_besides_the_stem_are_refused(tmp_path: Path) -> None:
    """Their float sums depend on the kernels (NCHWc blocks them on x86): no exact file."""
    with pytest.raises(SystemExit, match="float convolutions besides the stem"):
        dyadic_file(EIGHT_BIT, tmp_path / "x.onnx", None)
    # as a yardstick only: scales made dyadic, float layers left, and no mark
    dyadic_file(EIGHT_BIT, tmp_path / "y.onnx", None, strict=False)
    assert INT8_SCALES_KEY not in identity.metadata((tmp_path / "y.onnx").read_bytes())


def test_weights_only_shrink_so_an_ordered_file_stays_safe(tmp_path: Path) -> None:
    """Requantizing to a larger scale never grows an integer, so ``pair-order``'s bound holds
    (and serving keeps the fast AVX2 kernels) whichever pass runs first."""
    ordered = tmp_path / "o.onnx"
    order_file(EIGHT_BIT, ordered, None)
    model = onnx.load(str(ordered))
    assert unsafe_layers(model) == []
    before = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    make_dyadic(model, strict=False)
    assert unsafe_layers(model) == []
    for init in model.graph.initializer:
        new = numpy_helper.to_array(init)
        if new.dtype == np.int8:
            assert (np.abs(new.astype(int)) <= np.abs(before[init.name].astype(int))).all()


def test_a_dyadic_file_changes_nothing_again(student: dict, tmp_path: Path) -> None:
    again = dyadic_file(student["after"], tmp_path / "again.onnx", None)
    assert again["layers"] == student["counts"]["layers"]
    assert again["activation_scales"] == again["addition_scales"] == again["zero_points"] == 0
    assert again["weights_changed"] == 0


def test_the_command_writes_a_marked_file(student: dict, tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    command = ["dyadic-scales", "--model", str(student["before"]), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "model_build", *command, "--version", "1.0.1"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "activation scales rounded up to powers of two" in done.stdout
    assert identity.metadata(out.read_bytes())[INT8_SCALES_KEY] == INT8_SCALES_DYADIC


def test_tie_free_raises_the_inputs_of_each_sum_last_sums_first() -> None:
    additions = [("c1", ("a", "b1")), ("c2", ("c1", "b2"))]
    scales = {"a": 0.25, "b1": 0.0625, "c1": 0.125, "b2": 0.5, "c2": 0.5}
    assert tie_free(scales, additions) == {
        "a": 0.5,  # raised through c1, itself raised by c2
        "b1": 0.5,
        "c1": 0.5,
        "b2": 0.5,
        "c2": 0.5,  # a sum's own scale never moves
    }
    assert tie_free({"a": 1.0, "b": 2.0, "c": 0.5}, [("c", ("a", "b"))]) == {
        "a": 1.0,
        "b": 2.0,
        "c": 0.5,
    }


def test_export_makes_a_7_bit_dyadic_student_file_without_moving_its_scales(
    tmp_path: Path,
) -> None:
    """What ``export-pretrained --student`` does with a ``distill --dyadic
    --dense-input-bits 7`` student: its file is narrowed, given dyadic weights and an exact
    stem, and no activation scale moves (the simulation trained with them, tied around the
    addition in the 7-bit units the file holds); a student trained without the tie is refused."""
    net, calib = tiny(), smooth_images(24, 0)
    plain = quantize_int8(
        export_onnx(net, META, MEAN, STD, tmp_path / "t.onnx"), tmp_path / "p.onnx", calib
    )
    params = qsim.activation_params(plain)
    dense = [q.input[0] for q, _ in dense_input_quantizers(onnx.load(str(plain)))]
    seven = narrowed_inputs(dense, params, "all")
    additions = residual_additions(onnx.load(str(plain)))
    assert seven and additions

    def student_file(name: str, tied: list) -> Path:
        serving = student_model(net, MEAN, STD, SIZE)
        scheme = {"narrowed": seven, "dyadic": True, "additions": tied}
        qsim.attach(serving, params, **scheme)
        scales = qsim.learned_params(serving, params, **scheme)
        qsim.strip(serving)
        fp32 = export_serving(serving, META, tmp_path / f"{name}.fp32.onnx")
        out = tmp_path / f"{name}.onnx"
        stem = conv_prefix(fp32, 1)
        return quantize_int8(fp32, out, calib, keep_float=stem, activation_overrides=scales)

    path = student_file("tied", additions)
    make_exact(path, path, seven, dyadic=True)
    assert identity.metadata(path.read_bytes())[INT8_SCALES_KEY] == INT8_SCALES_DYADIC
    untied = student_file("untied", [])
    with pytest.raises(RuntimeError, match="other than the student trained with"):
        make_exact(untied, untied, seven, dyadic=True)
