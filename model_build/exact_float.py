"""Float convolutions that ONNX Runtime's two executions compute alike: a dyadic file's prefix.

Why: a file keeps its first convolutions in float because 8-bit activations there cost most
(ImageNet: quantizing the stem's output alone moves the mean KL to PyTorch from 0.011 to
0.035). But a float convolution's sum depends on the kernel: the optimized execution runs
ONNX Runtime's blocked NCHWc kernels, which add in another order than the reference's plain
ones, and every value next to a rounding boundary downstream may then round the other way
(a dyadic ImageNet file with such a prefix: 83 of 120 images identical, probabilities 0.09
apart). The order of a float sum does not matter when every product and every partial sum is
exact in float32, i.e. a whole number of one unit below 2**24. So each tensor between two
float convolutions is quantized to ``bits`` levels (8-12) on a power-of-two step, and each
convolution's weights are rounded, per output channel, to the widest integer multiples of a
power of two that keep ``terms x largest input code x largest weight + bias`` below 2**24
(``SUM_BITS`` leaves half of it to the bias). Activations and weights share those 24 bits,
so ``choose_bits`` picks each tensor's bits on calibration images (ImageNet 1.1.0 on its 36
training images: 11, 9, 11, 10 and 8 bits, weights 10-12 bits; a plan of that kind alone, the
rest of the file as it was, moved the mean KL to PyTorch on the check images from 0.011 to
0.015).

The quantization is written as ``Mul(1/step) -> Round -> Clip -> Mul(step)``, not as a
QuantizeLinear/DequantizeLinear pair: ONNX Runtime's optimizer fuses a QDQ pair around a
convolution with float weights into an int8 kernel, quantizing those weights itself
(measured: 0 of 120 images identical). Every one of those ops is exact and runs alike in
both executions. Each tensor is first rescaled so that its step is a power of two with the
same number of levels (``dyadic.rescale_factor``): its writer's weights, bias and ReLU6 bound
times the factor, its readers' weights divided by it. The stem reads whole grey levels
(``dyadic.whole_grey_padding``).

What it costs: time. The element-wise ops have no NCHWc kernels, so each quantized tensor
takes ONNX Runtime out of its blocked layout and back; ImageNet's prefix so made runs at 1.9x
the shipped file's time on AVX-512 VNNI and 1.45x on AVX2 kernels (`int8-latency`), and no
shipped file uses it (``notes/int8_on_every_cpu.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from model_build.quantize import mean_kl

#: Bits of a float32 significand a sum of products may use; the rest is left to the bias.
SUM_BITS = 23
#: Levels tried for each tensor between float convolutions.
BITS = (8, 9, 10, 11, 12)
#: ReLU6's upper bound as the exporter writes it (a ``Clip``).
RELU6 = 6.0
#: The stem reads pixels: whole grey levels 0..255 (its padding rounded to them too).
PIXEL_CODE = 255


#: Per link tensor: its range (lo, hi) and its bits. What ``distill`` trains through and the
#: exported file gets, the same numbers (``plan`` computes it, checkpoints keep it).
Plan = dict[str, tuple[float, float, int]]


@dataclass(frozen=True)
class Rounding:
    """How one float convolution's weights are rounded: the file holds them times ``ratio``
    (its output's rescale factor over its input's), on the grid ``wide_weights`` gives inputs
    of at most ``input_code`` steps of ``input_step``; its bias is times ``out_factor``."""

    out_factor: float
    in_factor: float
    input_step: float
    input_code: int

    @property
    def ratio(self) -> float:
        return self.out_factor / self.in_factor


@dataclass
class Link:
    """A tensor written by one float convolution (after its ReLU6, if any) and read by others."""

    writer: onnx.NodeProto
    clip: onnx.NodeProto | None
    tensor: str
    readers: list[onnx.NodeProto]


def float_convolutions(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Convolutions whose weights are float initializers, in graph order."""
    arrays = {i.name: i for i in model.graph.initializer}
    return [
        n
        for n in model.graph.node
        if n.op_type == "Conv"
        and n.input[1] in arrays
        and arrays[n.input[1]].data_type == onnx.TensorProto.FLOAT
    ]


def links(model: onnx.ModelProto) -> list[Link]:
    """The tensors between float convolutions (each read by float convolutions only)."""
    convs = float_convolutions(model)
    names = {c.name for c in convs}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    found = []
    for conv in convs:
        after = consumers.get(conv.output[0], [])
        clip = after[0] if len(after) == 1 and after[0].op_type == "Clip" else None
        tensor = clip.output[0] if clip is not None else conv.output[0]
        readers = consumers.get(tensor, [])
        if readers and all(r.name in names for r in readers):
            found.append(Link(conv, clip, tensor, readers))
    return found


def reference_session(model: onnx.ModelProto, outputs: Sequence[str]) -> ort.InferenceSession:
    """The file as written (no graph optimization), with ``outputs`` exposed."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for name in outputs:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(probe.SerializeToString(), options, ["CPUExecutionProvider"])


def ranges(model: onnx.ModelProto, images: np.ndarray) -> dict[str, tuple[float, float]]:
    """Each link's range on ``images`` (ReLU6 outputs from 0, at most 6; others their min/max,
    0 included)."""
    found = links(model)
    sess = reference_session(model, [link.tensor for link in found])
    feed = sess.get_inputs()[0].name
    lo = {link.tensor: 0.0 for link in found}
    hi = {link.tensor: 0.0 for link in found}
    for start in range(0, len(images), 16):
        values = sess.run(None, {feed: images[start : start + 16]})
        for link, value in zip(found, values, strict=True):
            lo[link.tensor] = min(lo[link.tensor], float(value.min()))
            hi[link.tensor] = max(hi[link.tensor], float(value.max()))
    return {
        link.tensor: (0.0, min(hi[link.tensor], RELU6))
        if link.clip is not None
        else (lo[link.tensor], hi[link.tensor])
        for link in found
    }


def grid(lo: float, hi: float, bits: int) -> tuple[float, float, int]:
    """(rescale factor, power-of-two step, zero point) for ``bits`` levels over ``lo..hi``."""
    levels = 2**bits - 1
    step = max(hi - lo, 1e-8) / levels
    zero_point = round(-lo / step)
    power = 2.0 ** np.floor(np.log2(step))
    return power / step, float(power), zero_point


def largest_weight(terms: int, input_code: int) -> float:
    """The largest integer weight whose products, ``terms`` of them with inputs of at most
    ``input_code``, sum below 2**SUM_BITS."""
    return float(np.floor(2.0**SUM_BITS / (terms * input_code)))


def weight_units(w: np.ndarray, largest: float) -> np.ndarray:
    """Per output channel, the power of two whose multiples up to ``largest`` cover ``w``."""
    flat = np.abs(w.astype(np.float64)).reshape(len(w), -1).max(1)
    return 2.0 ** np.ceil(np.log2(np.maximum(flat, 1e-30) / largest))


def wide_weights(
    w: np.ndarray, b: np.ndarray, input_step: float, input_code: int
) -> tuple[np.ndarray, np.ndarray]:
    """``w`` and ``b`` rounded, per output channel, to multiples of a power of two ``u`` (the
    bias to ``input_step * u``) such that every partial sum of the convolution, in units of
    ``input_step * u``, is a whole number below 2**24 for inputs of at most ``input_code``
    units: exact in float32, in any order."""
    terms = int(np.prod(w.shape[1:]))
    exponent = np.log2(weight_units(w, largest_weight(terms, input_code)))
    while True:
        unit = 2.0**exponent
        m = np.round(w.astype(np.float64) / unit.reshape(-1, *[1] * (w.ndim - 1)))
        bias = np.round(b.astype(np.float64) / (input_step * unit))
        worst = terms * input_code * np.abs(m).reshape(len(w), -1).max(1) + np.abs(bias)
        over = worst >= 2.0**24
        if not over.any():
            break
        exponent = exponent + over  # a large bias: coarser steps for that channel
    shape = (-1, *[1] * (w.ndim - 1))
    return (m * unit.reshape(shape)).astype(np.float32), (bias * input_step * unit).astype(
        np.float32
    )


def roundings(model: onnx.ModelProto, plan: Plan) -> dict[str, Rounding]:
    """Per float convolution made exact under ``plan`` (by node name): the stem (whole grey
    levels) and every one reading a planned link; the others are left float."""
    inputs: dict[str, tuple[float, int, float]] = {}
    outputs: dict[str, float] = {}
    for link in links(model):
        if link.tensor not in plan:
            continue
        lo, hi, bits = plan[link.tensor]
        factor, step, zero_point = grid(lo, hi, bits)
        code = max(zero_point, 2**bits - 1 - zero_point)
        outputs[link.writer.name] = factor
        for reader in link.readers:
            inputs[reader.name] = (step, code, factor)
    stem = next((n for n in model.graph.node if n.op_type == "Conv"), None)
    found = {}
    for conv in float_convolutions(model):
        if conv.name in inputs:
            step, code, factor = inputs[conv.name]
        elif conv is stem:
            step, code, factor = 1.0, PIXEL_CODE, 1.0
        else:
            continue
        found[conv.name] = Rounding(outputs.get(conv.name, 1.0), factor, step, code)
    return found


def rewrite(model: onnx.ModelProto, plan: Plan) -> int:
    """Quantize the links in ``plan`` (in place) and round the weights of every float
    convolution ``roundings`` names. Returns the convolutions made exact. A link absent from
    ``plan`` stays float (and its readers' weights as they are)."""
    arrays = {i.name: i for i in model.graph.initializer}

    def get(name: str) -> np.ndarray:
        return numpy_helper.to_array(arrays[name]).astype(np.float64)

    def put(name: str, value: np.ndarray) -> None:
        array = numpy_helper.from_array(np.asarray(value, np.float32), name)
        if name in arrays:
            arrays[name].CopyFrom(array)
        else:
            model.graph.initializer.append(array)
            arrays[name] = model.graph.initializer[-1]

    rounded = roundings(model, plan)
    for link in links(model):
        if link.tensor not in plan:
            continue
        if link.writer.name not in rounded:
            raise ValueError(f"{link.tensor}: its writer reads a float tensor left unplanned")
        lo, hi, bits = plan[link.tensor]
        factor, step, zero_point = grid(lo, hi, bits)
        if link.clip is not None:
            bound = f"{link.tensor}_bound"
            put(bound, np.asarray(RELU6 * factor))
            link.clip.input[2] = bound
        base = link.tensor
        put(f"{base}_inverse_step", np.asarray(1.0 / step))
        put(f"{base}_step", np.asarray(step))
        put(f"{base}_low", np.asarray(-zero_point))
        put(f"{base}_high", np.asarray(2**bits - 1 - zero_point))
        nodes = [
            helper.make_node("Mul", [base, f"{base}_inverse_step"], [f"{base}_units"]),
            helper.make_node("Round", [f"{base}_units"], [f"{base}_codes"]),
            helper.make_node(
                "Clip", [f"{base}_codes", f"{base}_low", f"{base}_high"], [f"{base}_clipped"]
            ),
            helper.make_node("Mul", [f"{base}_clipped", f"{base}_step"], [f"{base}_quantized"]),
        ]
        for k, node in enumerate(nodes):
            node.name = f"{base}_exact_{k}"
        for reader in link.readers:
            reader.input[0] = f"{base}_quantized"
        after = link.clip if link.clip is not None else link.writer
        at = list(model.graph.node).index(after) + 1
        for k, node in enumerate(nodes):
            model.graph.node.insert(at + k, node)
    for conv in float_convolutions(model):
        r = rounded.get(conv.name)
        if r is None:
            continue
        w = get(conv.input[1]) * r.ratio
        b = get(conv.input[2]) * r.out_factor if len(conv.input) > 2 else np.zeros(len(w))
        new_w, new_b = wide_weights(w, b, r.input_step, r.input_code)
        put(conv.input[1], new_w)
        if len(conv.input) > 2:
            put(conv.input[2], new_b)
    return len(rounded)


def _probabilities(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    sess = reference_session(model, [model.graph.output[0].name])
    feed = sess.get_inputs()[0].name
    return np.concatenate(
        [sess.run(None, {feed: images[i : i + 16]})[0] for i in range(0, len(images), 16)]
    )


def choose_bits(
    model: onnx.ModelProto, images: np.ndarray, spans: dict[str, tuple[float, float]]
) -> dict[str, int]:
    """Each link's bits by the KL from the file as it is on ``images``, in graph order, the
    links before it quantized as chosen and those after it float: more bits for a tensor
    leave fewer to the weights that read it, and what is best depends on the errors above."""
    target = _probabilities(model, images)
    chosen: dict[str, int] = {}
    for link in links(model):
        scores = {}
        for bits in BITS:
            trial = onnx.ModelProto()
            trial.CopyFrom(model)
            rewrite(trial, _with_spans(spans, chosen | {link.tensor: bits}))
            scores[bits] = mean_kl(target, _probabilities(trial, images))
        chosen[link.tensor] = min(scores, key=lambda b: scores[b])
    return chosen


def _with_spans(spans: dict[str, tuple[float, float]], bits: dict[str, int]) -> Plan:
    return {t: (*spans[t], b) for t, b in bits.items()}


def plan(model: onnx.ModelProto, images: np.ndarray) -> Plan:
    """Ranges and bits of ``model``'s links on ``images`` (uint8 NHWC, calibration images)."""
    spans = ranges(model, images)
    return _with_spans(spans, choose_bits(model, images, spans))


def prefix_plan(model: onnx.ModelProto | None, images: np.ndarray | None) -> Plan | None:
    """``plan`` of a file keeping float convolutions besides the stem (a float prefix), else
    None (nothing to plan, or no images to plan on)."""
    if model is None or images is None or len(float_convolutions(model)) <= 1:
        return None
    return plan(model, images)
