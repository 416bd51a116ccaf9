"""The int8 simulation must match the QDQ file ONNX Runtime runs, tensor for tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from model_build import qsim
from model_build.distill import (
    augment,
    composite,
    holdout_indices,
    init_from_file,
    narrowed_inputs,
    read_pack,
    student_model,
    write_pack,
)
from model_build.dyadic import dyadic_file
from model_build.narrow import dense_input_quantizers, narrow_file
from model_build.onnx_export import export_onnx, export_serving, run_onnx, session
from model_build.quantize import conv_prefix, quantize_int8

from .tiny_mobile import MEAN, META, SIZE, STD, TinyMobile, smooth_images, tiny


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("qsim")
    net = tiny()
    fp32 = export_onnx(net, META, MEAN, STD, tmp / "t.fp32.onnx")
    calib = smooth_images(24, 0)
    return net, quantize_int8(fp32, tmp / "t.int8.onnx", calib, method="minmax"), calib


def test_onnx_scope_follows_the_exporter() -> None:
    assert (
        qsim.onnx_scope("net.1.features.3.conv.0.2")
        == "/net/net.1/features/features.3/conv/conv.0/conv.0.2"
    )


def test_fake_quant_rounds_clamps_and_passes_gradients_only_inside() -> None:
    x = torch.tensor([-0.9, 0.26, 0.74, 3.0], requires_grad=True)
    y = qsim.fake_quant(x, 0.5, 2)  # representable: -1.0 .. 126.5 in steps of 0.5
    assert y.tolist() == [-1.0, 0.5, 0.5, 3.0]
    qsim.fake_quant(torch.tensor([-5.0]), 0.5, 2)  # below range: clamps, no error
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0]
    z = torch.tensor([-5.0, 200.0], requires_grad=True)
    qsim.fake_quant(z, 0.5, 2).sum().backward()
    assert z.grad.tolist() == [0.0, 0.0]


def test_the_stem_input_is_quantized_exactly(quantized: tuple) -> None:
    _, int8, _ = quantized
    params = qsim.activation_params(int8)
    stem = [t for t in params if "Concat" in t]
    assert len(stem) == 1 and params[stem[0]] == (1.0, 0)


def test_simulation_matches_onnx_runtime(quantized: tuple) -> None:
    net, int8, _ = quantized
    params = qsim.activation_params(int8)
    student = student_model(net, MEAN, STD, SIZE)
    placed = qsim.attach(student, params)
    assert sorted(placed) == sorted(params)
    test = smooth_images(16, 1)
    with torch.no_grad():
        sim = student(torch.from_numpy(test)).numpy()
    ort = run_onnx(session(int8), test)
    assert np.abs(sim - ort).max() < 0.02
    # and the simulation is not the float model (it does round)
    with torch.no_grad():
        plain = student_model(net, MEAN, STD, SIZE)(torch.from_numpy(test)).numpy()
    assert np.abs(plain - ort).max() > np.abs(sim - ort).max()


def test_the_simulation_of_7_bit_dense_inputs_matches_the_narrowed_file(
    quantized: tuple, tmp_path: Path
) -> None:
    """``distill --dense-input-bits 7`` trains through what ``narrow-inputs`` will write."""
    net, int8, _ = quantized
    params = qsim.activation_params(int8)
    narrowed_file = tmp_path / "t7.int8.onnx"
    outputs = narrow_file(int8, narrowed_file, None)
    dense = [q.input[0] for q, _ in dense_input_quantizers(onnx.load(str(int8)))]
    assert len(dense) == len(outputs) >= 3  # stem, the block's projection, the last conv, ...
    student = student_model(net, MEAN, STD, SIZE)
    qsim.attach(student, params, narrowed=dense)
    test = smooth_images(16, 1)
    with torch.no_grad():
        sim = student(torch.from_numpy(test)).numpy()
    narrow_ort, wide_ort = run_onnx(session(narrowed_file), test), run_onnx(session(int8), test)
    assert np.abs(sim - narrow_ort).max() < 0.02
    assert np.abs(sim - wide_ort).max() > np.abs(sim - narrow_ort).max()
    # the scales kept are the 8-bit ones (narrow-inputs doubles them in the file)
    assert qsim.learned_params(student, params, dense) == params


def test_a_narrowed_relu6_range_is_capped_at_half() -> None:
    tensor = "/f/features.0/features.0.2/Clip_output_0"
    assert qsim.scale_cap(tensor, 0.001, 0) == pytest.approx(6 / 255)
    assert qsim.scale_cap(tensor, 0.001, 0, narrowed=True) == pytest.approx(6 / 510)
    assert qsim.scale_cap(tensor, 0.1, 0, narrowed=True) == 0.1  # never below calibrated


def test_unknown_quantized_tensor_is_an_error(quantized: tuple) -> None:
    net, _, _ = quantized
    with pytest.raises(KeyError):
        qsim.attach(student_model(net, MEAN, STD, SIZE), {"/net/nowhere/Conv_output_0": (1.0, 0)})


def test_trained_student_round_trips_with_its_scales(quantized: tuple, tmp_path: Path) -> None:
    """strip() leaves plain float weights whose export re-quantizes with the trained scales."""
    net, int8, calib = quantized
    params = qsim.activation_params(int8)
    student = student_model(net, MEAN, STD, SIZE)
    qsim.attach(student, params)
    opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-3)
    x = torch.from_numpy(calib)
    teacher = student_model(net, MEAN, STD, SIZE)
    with torch.no_grad():
        target = teacher(x)
    qsim.kl_to(target, student(x)).backward()
    opt.step()
    qsim.strip(student)
    assert not any(parametrize.is_parametrized(m) for m in student.modules())
    assert not any(m._forward_hooks for m in student.modules())
    fp32 = export_serving(student, META, tmp_path / "s.fp32.onnx")
    again = quantize_int8(fp32, tmp_path / "s.int8.onnx", calib, activation_overrides=params)
    assert qsim.activation_params(again) == params


def test_fake_quant_scale_gradient_is_lsq() -> None:
    """d out / d scale: round(v) - v inside the range, the bound (minus zero point) outside."""
    scale = torch.tensor(0.5, requires_grad=True)
    x = torch.tensor([0.3, 0.9, -5.0, 200.0])  # v = 0.6, 1.8 inside; below; above (zp 2)
    qsim.fake_quant(x, scale, 2).sum().backward()
    expected = (1 - 0.6) + (2 - 1.8) + (0 - 2) + (255 - 2)
    assert scale.grad.item() == pytest.approx(expected, abs=1e-5)


def test_learned_scales_start_as_the_file_and_round_trip(quantized: tuple, tmp_path: Path) -> None:
    """Untrained, the learnable simulation is the fixed one to the bit; trained, its scales move,
    are read back by learned_params, go away with strip, and the export uses them exactly."""
    net, int8, calib = quantized
    params = qsim.activation_params(int8)
    fixed, learn = (student_model(net, MEAN, STD, SIZE) for _ in range(2))
    qsim.attach(fixed, params)
    qsim.attach(learn, params, learn_scales=True)
    x = torch.from_numpy(calib)
    with torch.no_grad():
        assert torch.equal(fixed(x), learn(x))
    assert qsim.learned_params(learn, params) == params
    scales = list(getattr(learn, qsim.SCALES).values())
    # one per tensor, less the pixel input (fixed) and Flatten (shares the pooling's)
    assert len(scales) == len(params) - 2
    opt = torch.optim.Adam(scales, lr=0.05)
    with torch.no_grad():
        target = student_model(net, MEAN, STD, SIZE)(x)
    for _ in range(3):
        opt.zero_grad()
        qsim.kl_to(target, learn(x)).backward()
        opt.step()
    learned = qsim.learned_params(learn, params)
    assert learned.keys() == params.keys() and learned != params
    assert all(learned[t][1] == zp for t, (_, zp) in params.items())  # zero points stay
    stem = next(t for t in params if "Concat" in t)
    assert learned[stem] == params[stem] == (1.0, 0)  # exact pixels stay exact
    qsim.strip(learn)
    assert not hasattr(learn, qsim.SCALES)
    assert not any(n.startswith(qsim.SCALES) for n in learn.state_dict())
    fp32 = export_serving(learn, META, tmp_path / "s.fp32.onnx")
    again = quantize_int8(fp32, tmp_path / "s.int8.onnx", calib, activation_overrides=learned)
    got = qsim.activation_params(again)
    assert all(got[t][0] == pytest.approx(s, rel=1e-6) for t, (s, _) in learned.items())


def test_representable_caps_relu6_ranges_and_ties_the_pooled_tensors() -> None:
    """What ONNX Runtime's quantizer does with overrides: it removes ReLU6 nodes (their uint8
    range must then end at 6) and gives Flatten its input's parameters."""
    calibrated = {
        "/a/Clip_output_0": (5.0 / 255, 0),
        "/b/Conv_output_0": (0.1, 128),
        "/net/GlobalAveragePool_output_0": (0.01, 0),
        "/net/Flatten_output_0": (0.01, 0),
    }
    learned = {
        "/a/Clip_output_0": (8.0 / 255, 0),  # 0..8 would stop clipping at 6
        "/b/Conv_output_0": (0.5, 128),  # not a ReLU6: free
        "/net/GlobalAveragePool_output_0": (0.02, 0),
        "/net/Flatten_output_0": (0.03, 0),
    }
    out = qsim.representable(learned, calibrated)
    assert out["/a/Clip_output_0"] == (6.0 / 255, 0)
    assert out["/b/Conv_output_0"] == (0.5, 128)
    assert out["/net/Flatten_output_0"] == out["/net/GlobalAveragePool_output_0"] == (0.02, 0)
    assert qsim.representable(calibrated, calibrated) == calibrated
    # a calibrated range already past 6 (float rounding) is never cut below itself
    assert qsim.scale_cap("/a/Clip_output_0", 6.01 / 255, 0) == 6.01 / 255


def test_composite_pastes_stamps_where_opaque_only() -> None:
    bg = torch.full((4, 3, 32, 32), 10.0)
    opaque = torch.zeros(1, 16, 16, 4, dtype=torch.uint8)
    opaque[..., :3], opaque[..., 3] = 200, 255
    out = composite(bg, opaque, torch.Generator().manual_seed(0), share=1.0)
    assert torch.equal(bg, torch.full((4, 3, 32, 32), 10.0))  # input untouched
    areas = {int((img[0].round() == 200).sum()) for img in out}  # one size per call
    assert len(areas) == 1
    side = round(areas.pop() ** 0.5)
    assert 11 <= side <= 32
    assert all(set(img.round().unique().tolist()) == {10.0, 200.0} for img in out)
    clear = torch.zeros(1, 16, 16, 4, dtype=torch.uint8)
    clear[..., :3] = 255  # colour under alpha 0 must not bleed in
    again = composite(bg, clear, torch.Generator().manual_seed(0), share=1.0)
    assert torch.allclose(again, bg)
    assert torch.equal(composite(bg, opaque, torch.Generator().manual_seed(0), share=0.0), bg)


def test_pack_round_trip_and_augment(tmp_path: Path) -> None:
    src = smooth_images(6, 2)
    params = {"/a/Conv_output_0": (0.05, 3)}
    write_pack(tmp_path / "p.npz", src, src[:2], params, ["/a/Conv"], ["/a/Conv_output_0"])
    s, c, p, floats, dense = read_pack(tmp_path / "p.npz")
    assert np.array_equal(s, src) and np.array_equal(c, src[:2]) and p == params
    assert floats == ["/a/Conv"] and dense == ["/a/Conv_output_0"]
    gen = torch.Generator().manual_seed(0)
    out = augment(torch.from_numpy(src), 24, gen, mix=1.0)
    assert out.shape == (6, 24, 24, 3) and out.dtype == torch.uint8
    plain = augment(torch.from_numpy(src), 24, torch.Generator().manual_seed(0))
    assert not torch.equal(out, plain)


@pytest.fixture(scope="module")
def prefix_quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The tiny net quantized with its first two convolutions (stem, depthwise) kept float."""
    tmp = tmp_path_factory.mktemp("qsim-prefix")
    net = tiny()
    fp32 = export_onnx(net, META, MEAN, STD, tmp / "t.fp32.onnx")
    floats = conv_prefix(fp32, 2)
    calib = smooth_images(24, 0)
    int8 = quantize_int8(fp32, tmp / "t.int8.onnx", calib, method="minmax", keep_float=floats)
    return net, int8, floats


def test_conv_prefix_is_the_first_convolutions_in_graph_order(prefix_quantized: tuple) -> None:
    _, _, floats = prefix_quantized
    assert floats == [
        "/net/net.1/features/features.0/features.0.0/Conv",
        "/net/net.1/features/features.1/conv/conv.0/conv.0.0/Conv",
    ]


def test_float_prefix_keeps_pixels_and_prefix_weights_float(
    prefix_quantized: tuple, quantized: tuple
) -> None:
    net, int8, floats = prefix_quantized
    params = qsim.activation_params(int8)
    # The pixels are not rounded; prefix outputs only where quantized layers read them.
    assert not any("Concat" in t for t in params)
    assert len(params) < len(qsim.activation_params(quantized[1]))
    student = student_model(net, MEAN, STD, SIZE)
    qsim.attach(student, params, floats)
    rounded = {
        name for name, m in student.named_modules() if parametrize.is_parametrized(m, "weight")
    }
    assert "net.1.features.0.0" not in rounded and "net.1.features.1.conv.0.0" not in rounded
    assert "net.1.features.1.conv.1" in rounded and "net.1.classifier.1" in rounded


def test_simulation_with_a_float_prefix_matches_onnx_runtime(prefix_quantized: tuple) -> None:
    net, int8, floats = prefix_quantized
    student = student_model(net, MEAN, STD, SIZE)
    qsim.attach(student, qsim.activation_params(int8), floats)
    test = smooth_images(16, 1)
    with torch.no_grad():
        sim = student(torch.from_numpy(test)).numpy()
    ort = run_onnx(session(int8), test)
    assert np.abs(sim - ort).max() < 0.02
    # rounding the prefix's weights too would be a different model
    wrong = student_model(net, MEAN, STD, SIZE)
    qsim.attach(wrong, qsim.activation_params(int8))
    with torch.no_grad():
        assert np.abs(wrong(torch.from_numpy(test)).numpy() - sim).max() > 0


def test_unknown_float_node_is_an_error(prefix_quantized: tuple) -> None:
    net, int8, _ = prefix_quantized
    with pytest.raises(KeyError):
        qsim.attach(
            student_model(net, MEAN, STD, SIZE),
            qsim.activation_params(int8),
            ["/net/nowhere/Conv"],
        )


def test_holdout_is_fixed_disjoint_and_optional() -> None:
    a, b = holdout_indices(48, 12), holdout_indices(48, 12)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 12 and a.max() < 48
    assert len(holdout_indices(48, 0)) == 0
    with pytest.raises(ValueError):
        holdout_indices(12, 12)


def test_a_student_started_from_an_int8_file_simulates_that_file(tmp_path: Path) -> None:
    """``distill --init FILE``: weights and activation scales come from the file (a student's
    export, named by module path as students are), not from the float network the new student
    is built from (here one with other, random weights)."""
    fp32 = export_serving(student_model(tiny(), MEAN, STD, SIZE), META, tmp_path / "s.onnx")
    int8 = quantize_int8(fp32, tmp_path / "s.int8.onnx", smooth_images(24, 0), method="minmax")
    student = student_model(TinyMobile().eval(), MEAN, STD, SIZE)
    params, _ = init_from_file(student, int8)
    assert params == qsim.activation_params(int8)
    qsim.attach(student, params)
    test = smooth_images(16, 1)
    with torch.no_grad():
        sim = student(torch.from_numpy(test)).numpy()
    assert np.abs(sim - run_onnx(session(int8), test)).max() < 0.02


def test_a_stream_student_narrows_the_stream_and_the_pooled_features_only() -> None:
    params = {
        "a/Add_output_0": (0.1, 128),
        "b/Clip_output_0": (0.02, 0),
        "c/Conv_output_0": (0.03, 127),
    }
    params |= {"/net/net.1/Flatten_output_0": (0.01, 0), "e/Clip_output_0": (0.02, 0)}
    dense = list(params)
    assert narrowed_inputs(dense, params, "all") == dense
    assert narrowed_inputs(dense, params, "stream") == [dense[0], dense[2], dense[3]]


def test_the_dyadic_simulation_matches_the_dyadic_file(quantized: tuple, tmp_path: Path) -> None:
    """``distill --dyadic`` trains through what ``dyadic-scales`` writes: power-of-two
    activation scales (which the file then keeps as they are) and weights rounded twice."""
    net, int8, calib = quantized
    params = qsim.activation_params(int8)
    student = student_model(net, MEAN, STD, SIZE)
    qsim.attach(student, params, dyadic=True)
    test = smooth_images(16, 1)
    with torch.no_grad():
        sim = student(torch.from_numpy(test)).numpy()
    scales = qsim.learned_params(student, params, dyadic=True)
    assert all(s == 2.0 ** np.round(np.log2(s)) for s, _ in scales.values())
    assert scales != params
    qsim.strip(student)
    fp32 = export_serving(student, META, tmp_path / "s.fp32.onnx")
    written = quantize_int8(fp32, tmp_path / "s.int8.onnx", calib, activation_overrides=scales)
    dyadic = tmp_path / "d.int8.onnx"
    assert dyadic_file(written, dyadic, None)["activation_scales"] == 0
    on_file = run_onnx(session(dyadic), test)
    assert np.abs(sim - on_file).max() < 0.02
    assert np.abs(sim - run_onnx(session(int8), test)).max() > np.abs(sim - on_file).max()


def test_bounds_round_to_powers_of_two_within_the_cap_and_the_floor() -> None:
    relu6 = qsim.Bounds(cap=6 / 255, dyadic=True)
    assert relu6.apply(0.02) == 2.0**-6  # nearest power of two
    assert relu6.apply(0.03) == 2.0**-6  # 2**-5 would stop the file clipping at 6
    assert qsim.Bounds(floor=0.1, dyadic=True).apply(0.05) == 0.125
    assert qsim.Bounds(floor=0.1).apply(0.05) == 0.1
    assert qsim.Bounds().apply(0.05) == 0.05
    s = torch.tensor(0.3, requires_grad=True)
    out = qsim.Bounds(dyadic=True).apply(s)
    out.backward()
    assert out.item() == 0.25 and s.grad.item() == 1.0  # straight through


def test_representable_applies_the_floor_to_narrowed_tensors_only() -> None:
    learned = {"/a/Add_output_0": (0.01, 128), "/b/Conv_output_0": (0.01, 128)}
    floors = {"/a/Add_output_0": (0.04, 128), "/b/Conv_output_0": (0.04, 128)}
    out = qsim.representable(learned, learned, ["/a/Add_output_0"], floors=floors)
    assert out == {"/a/Add_output_0": (0.04, 128), "/b/Conv_output_0": (0.01, 128)}


def test_a_student_started_from_a_narrowed_file_gets_8_bit_parameters(
    quantized: tuple, tmp_path: Path
) -> None:
    """A narrowed file holds twice the scale and half the zero point of its 7-bit tensors; the
    simulation narrows 8-bit parameters itself, so ``--init`` must undo it (not narrow twice)."""
    net, _, calib = quantized
    fp32 = export_serving(student_model(net, MEAN, STD, SIZE), META, tmp_path / "s.onnx")
    int8 = quantize_int8(fp32, tmp_path / "s.int8.onnx", calib, method="minmax")
    narrowed = tmp_path / "n.int8.onnx"
    outputs = narrow_file(int8, narrowed, None)
    got, _ = init_from_file(student_model(net, MEAN, STD, SIZE), narrowed)
    want = qsim.activation_params(int8)
    assert got.keys() == want.keys() and len(outputs) >= 3
    for t, (s, zp) in want.items():
        assert got[t][0] == pytest.approx(s, rel=1e-6)
        assert qsim.narrow_zero_point(got[t][1]) == qsim.narrow_zero_point(zp)
