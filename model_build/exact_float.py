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

The quantization costs no extra pass. Its writer rounds: the writer's bias carries
``MAGIC`` steps (1.5 x 2**23), and adding it to the exact sum leaves float32 one whole step
per unit, so that one addition rounds the value to the step, half to even, in every kernel
(ONNX Runtime's kernels, blocked or plain, add the bias after the whole sum; the bias itself
is rounded to the step first). A ``HardSigmoid`` (``clip(alpha x + beta, 0, 1)``) then takes
the offset off again, exactly (powers of two), and clips the codes, offset by the zero point,
to ``0..2**bits``: ONNX Runtime fuses it into the convolution as its activation and the tensor
never leaves the blocked layout. The readers' weights absorb the step (a power of two) and
their biases the zero point's offset. The ``HardSigmoid`` clip is also the ReLU6's: the grid
puts 6 on code ``2**bits``. Measured on ImageNet files so made: bit-identical on the sample
photos and frames (VNNI, ARM64), at 1.05-1.07x the time of the shipped file, whose prefix is
plain float (``notes/int8_on_every_cpu.md``). Two forms that do not work: a QuantizeLinear/
DequantizeLinear pair, which ONNX Runtime fuses with the convolution into an int8 kernel that
quantizes the float weights itself (0 of 120 images identical); and ``Mul -> Round -> Clip ->
Mul``, exact but 1.9x the file's time (element-wise ops have no NCHWc kernels, so each link
took ONNX Runtime out of its blocked layout and back). Each tensor is first rescaled so that
its step is a power of two with the same number of levels (``dyadic.rescale_factor``): its
writer's weights and bias times the factor, its readers' weights divided by it. The stem reads
whole grey levels (``dyadic.whole_grey_padding``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from model_build.quantize import mean_kl

if TYPE_CHECKING:
    import torch

#: What ``compensation`` computes on: the file's arrays or the simulation's tensors.
Array = TypeVar("Array", np.ndarray, "torch.Tensor")

#: Bits of a float32 significand a sum of products may use; the rest is left to the bias.
SUM_BITS = 23
#: Levels tried for each tensor between float convolutions.
BITS = (8, 9, 10, 11, 12)
#: ReLU6's upper bound as the exporter writes it (a ``Clip``).
RELU6 = 6.0
#: The stem reads pixels: whole grey levels 0..255 (its padding rounded to them too).
PIXEL_CODE = 255
#: Steps added to a link writer's bias: its sum then lies in [2**23, 2**24) steps, where
#: float32 holds whole steps only, so the addition rounds to the step (for sums within
#: +-2**22 steps). Even, so the rounding's ties go as ``round`` half to even would.
MAGIC = 1.5 * 2**23


#: Per link tensor: its range (lo, hi) and its bits. What ``distill`` trains through and the
#: exported file gets, the same numbers (``plan`` computes it, checkpoints keep it).
Plan = dict[str, tuple[float, float, int]]


@dataclass(frozen=True)
class Rounding:
    """How one float convolution's weights are rounded: the file holds them times ``ratio``
    (its output's rescale factor over its input's), on the grid ``wide_weights`` gives inputs
    of at most ``input_code`` steps of ``input_step``; its bias is times ``out_factor``.
    Reading a link (``reads``), it gets that link's codes (``input_bits``, offset by
    ``input_zero_point``); writing one (``writes``), its bias lies on the link's ``output_step``
    (``fused``)."""

    out_factor: float
    in_factor: float
    input_step: float
    input_code: int
    input_zero_point: int = 0
    input_bits: int | None = None
    output_step: float | None = None
    reads: str | None = None
    writes: str | None = None

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
    """(rescale factor, power-of-two step, zero point) for codes ``0..2**bits`` over
    ``lo..hi`` (the link's ``HardSigmoid`` clips at 0 and at ``2**bits``)."""
    levels = 2**bits
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
    inputs: dict[str, tuple[float, int, int, float, str]] = {}
    outputs: dict[str, tuple[float, float | None, str | None]] = {}
    for link in links(model):
        if link.tensor not in plan:
            continue
        lo, hi, bits = plan[link.tensor]
        factor, step, zero_point = grid(lo, hi, bits)
        outputs[link.writer.name] = (factor, step, link.tensor)
        for reader in link.readers:
            inputs[reader.name] = (step, bits, zero_point, factor, link.tensor)
    stem = next((n for n in model.graph.node if n.op_type == "Conv"), None)
    found = {}
    for conv in float_convolutions(model):
        out_factor, out_step, writes = outputs.get(conv.name, (1.0, None, None))
        if conv.name in inputs:
            step, bits, zero_point, factor, reads = inputs[conv.name]
            found[conv.name] = Rounding(
                out_factor, factor, step, 2**bits, zero_point, bits, out_step, reads, writes
            )
        elif conv is stem:
            found[conv.name] = Rounding(
                out_factor, 1.0, 1.0, PIXEL_CODE, output_step=out_step, writes=writes
            )
    return found


def fused(w: np.ndarray, b: np.ndarray, r: Rounding) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wide weights ``w`` and bias ``b`` (``wide_weights``) as the fused file holds them: a
    link reader's weights times its input's step and ``2**bits`` (the ``HardSigmoid`` hands
    it codes over ``2**bits``), its bias less the zero point's share; a link writer's bias on
    its output's step plus ``MAGIC`` steps. Powers of two and whole units: nothing rounds but
    the bias onto the step, which ``qsim`` simulates. Also returns what that rounding added
    to each output channel (``compensation`` takes it off again in the readers)."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    shift = np.zeros(len(w))
    if r.input_bits is not None:
        b = b - r.input_zero_point * r.input_step * w.reshape(len(w), -1).sum(1)
        w = w * (r.input_step * 2.0**r.input_bits)
    if r.output_step is not None:
        on_step = np.round(b / r.output_step) * r.output_step
        shift, b = on_step - b, on_step + MAGIC * r.output_step
    return w.astype(np.float32), b.astype(np.float32), shift


def compensation(w: Array, shift: Array) -> Array:
    """Per output channel of a convolution with weights ``w`` (any groups), what inputs all
    moved by ``shift`` (one value per input channel) add to its sum: what a writer's bias
    rounded onto its step adds, on average, to its readers, taken off their biases (not at
    padded borders). Rounding a bias is no random error: left in, a channel's values all
    lean one way (ImageNet 1.1.0 made exact, no training: mean KL to PyTorch on the check
    images 0.047, 0.038 with it taken off). Numpy arrays here, torch tensors in ``qsim``'s
    simulation of it."""
    per_input = w.reshape(*w.shape[:2], -1).sum(2)  # (out, in per group)
    groups = len(shift) // w.shape[1]
    group_of = np.arange(len(w)) // (len(w) // groups)
    return (per_input * shift.reshape(groups, -1)[group_of]).sum(1)


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
        _, step, zero_point = grid(lo, hi, bits)
        if zero_point and any(_padded(reader) for reader in link.readers):
            raise ValueError(f"{link.tensor}: padding would read code 0 as -{zero_point} steps")
        unit = 2.0**-bits
        codes = helper.make_node(
            "HardSigmoid",
            [link.clip.input[0] if link.clip is not None else f"{link.tensor}_sum"],
            [link.tensor],
            name=f"{link.tensor}_codes",
            alpha=unit / step,
            beta=(zero_point - MAGIC) * unit,
        )
        if link.clip is not None:
            link.clip.CopyFrom(codes)  # the codes' clip is the ReLU6
        else:
            link.writer.output[0] = f"{link.tensor}_sum"
            at = list(model.graph.node).index(link.writer) + 1
            model.graph.node.insert(at, codes)
    shifts: dict[str, np.ndarray] = {}
    for conv in float_convolutions(model):
        r = rounded.get(conv.name)
        if r is None:
            continue
        w = get(conv.input[1]) * r.ratio
        b = get(conv.input[2]) * r.out_factor if len(conv.input) > 2 else np.zeros(len(w))
        if r.reads in shifts:
            b = b - compensation(w, shifts[r.reads])
        new_w, new_b, shift = fused(*wide_weights(w, b, r.input_step, r.input_code), r)
        if r.writes is not None:
            shifts[r.writes] = shift
        put(conv.input[1], new_w)
        if len(conv.input) > 2:
            put(conv.input[2], new_b)
        elif r.output_step is not None or r.input_zero_point:
            bias = f"{conv.name}_bias"
            put(bias, new_b)
            conv.input.append(bias)
    return len(rounded)


def _padded(node: onnx.NodeProto) -> bool:
    pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [])
    auto = next((a.s for a in node.attribute if a.name == "auto_pad"), b"NOTSET")
    return any(pads) or auto not in (b"NOTSET", b"VALID")


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
