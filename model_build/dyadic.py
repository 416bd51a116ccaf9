"""``dyadic-scales``: int8 files whose optimized execution equals the reference, bit for bit.

Why: ONNX Runtime runs an int8 QDQ file two ways (``model_build.cpu_check``). Optimized, each
layer is an integer kernel whose int32 sum is scaled by ``s_x * s_w / s_y`` and rounded; the
reference dequantizes, computes the layer in float and rounds ``value / s_y``. With arbitrary
scales the two products differ in their last bits, so every value that lands next to a
rounding boundary may round the other way, and MobileNetV2 carries such one-step differences
through 50 layers until near-tie labels flip (ImageNet 1.1.0: 7 of 120 sample photos and
frames, on every CPU, exact integer kernels or not). No choice of kernels removes it.

What removes it: scales under which both computations are exact. Every activation scale is a
power of two, and every weight scale a 4-bit mantissa times a power of two. Then a dequantized
value, each product of two (at most 8 + 8 + 4 significant bits) and the layer's float sum
(exact below 2**24 units, an int32 sum times a mantissa of at most 15) are exact in float32,
``s_x * s_w / s_y`` is exact, dividing by ``s_y`` is exact, and both executions round the same
number the same way (half to even). Residual additions (``s_a / s_c``) and the pooled features
are exact too, with one more condition: with such scales a sum often lands exactly halfway
between two steps, and ONNX Runtime's integer addition rounds the value plus the output's zero
point where the reference rounds the value and then adds it; half to even agrees only when the
zero point is even, so an addition's output gets an even one (one step of offset, at most).
Float layers compute alike only if their float sums are exact too, or ONNX Runtime's blocked
(NCHWc) kernels, which sum in another order than the reference's, round differently. So the
simplest float convolution such a file may keep is the stem, which reads the pixels themselves
(integers): its weights are rounded to int8 steps of a dyadic per-channel scale (what an int8
stem would hold) and its bias to the same steps, the pixel padding its ``Expand`` constants
write to whole grey levels; every product and every sum is then exact in float32 in any
order. Why a float stem and not an int8 one: the stem's 3x3 window fixes which weights the
AVX2 U8S8 kernels pair, so no channel order (``pair-order``) can keep 8-bit pixels from
saturating them; the float stem computes the int8 stem's numbers without those kernels.
A longer float prefix (the ImageNet file's six convolutions) is made exact the same way by
``exact_float``, given its plan: the tensors between its layers quantized on power-of-two
steps (8-12 bits), its weights widened to what keeps every sum within float32's 24 bits.

On ARM64 too, with one more condition: ONNX Runtime's NEON addition works in fixed point and
rounds ties away from zero, and with power-of-two scales ties are frequent (without it, 38,747
of one addition's values over two images moved by one step). So an addition's output scale is
at most each input's (``tie_free`` raises the inputs): the sum then has no fraction to round.

Measured: the optimized and reference probabilities of such a file are equal to the bit on
the sample photos and frames on a VNNI CPU, on AVX2 kernels and on ARM64 with and without dot
product (``notes/int8_on_every_cpu.md``); on AVX2 only values within the 7-bit ranges of
``narrow-inputs`` are safe, as ever (one of 120 images moved by 6e-4).

What it costs: each scale moves up to the next representable one. A weight scale grows by at
most 12.5 % (0.17 bit); an activation scale by up to 2x (1 bit) when rounded after the fact,
which is why a student is trained with the rounded scales (``distill --dyadic``) and this pass
then changes no activation scale of its file. Not so the tensors inside the blocks, written
and read by int8 convolutions only (``rescalable``): the pass multiplies such a tensor by the
factor that makes its scale a power of two (its writer's weights by it, its readers' by the
inverse), so it keeps its resolution and its ReLU6 range; the simulation rounds those
layers' weights as rescaled and leaves their scales free. Weights and int32 biases are
requantized to the new scales: ``round(q * s / s')`` (a weight only shrinks, so
``pair-order``'s bound holds).

The file says so in ``metadata_props["int8_scales"] = "dyadic"``.

    python -m model_build dyadic-scales --model FILE --version 1.2.0 [--out NEW]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from media_classifier.inference.model import INT8_SCALES_DYADIC, INT8_SCALES_KEY
from model_build import exact_float, narrow
from model_build.stamp import stamp

#: Significant bits of a weight scale (the leading one included): 8 steps per octave. More bits
#: would let a float sum of products leave float32's 24 bits (measured: 8 bits left 4.8e-7
#: differences); fewer would round weights coarser.
WEIGHT_SCALE_BITS = 4
ACTIVATION_SCALE_BITS = 1


def dyadic_ceil(scale: np.ndarray | float, bits: int) -> np.ndarray:
    """The smallest number >= ``scale`` with ``bits`` significant bits (float32, exact)."""
    s = np.asarray(scale, np.float64)
    exponent = np.floor(np.log2(s))
    steps = 2.0 ** (bits - 1)
    # 1e-9: a scale that already is such a number (float32 ratios are exact) stays put
    mantissa = np.ceil(s / 2.0**exponent * steps - 1e-9) / steps
    return (mantissa * 2.0**exponent).astype(np.float32)


def even_zero_point(zero_point: np.ndarray) -> np.ndarray:
    """The even neighbour of an odd uint8 zero point (up, but 255 goes down)."""
    z = int(zero_point)
    return np.asarray(z + 1 if z < 255 else z - 1, dtype=zero_point.dtype)


#: A residual addition by activation tensor names: its output and its inputs.
Addition = tuple[str, tuple[str, ...]]


def residual_additions(model: onnx.ModelProto) -> list[Addition]:
    """Every addition of quantized tensors, in graph order (``Addition``)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    found: list[Addition] = []
    for add in model.graph.node:
        if add.op_type != "Add":
            continue
        inputs = []
        for name in add.input:
            dq = producers.get(name)
            q = producers.get(dq.input[0]) if dq is not None else None
            if dq is None or q is None or q.op_type != "QuantizeLinear":
                break
            inputs.append(q.input[0])
        else:
            found.append((add.output[0], tuple(inputs)))
    return found


def tie_free(scales: dict, additions: list[Addition], larger=max) -> dict:
    """``scales`` (as the file holds them) with every addition's inputs at least as coarse as
    its output: with powers of two the additions' scale ratios are then whole numbers, so the
    sum needs no rounding, which ARM64's fixed-point addition would do its own way (ties away
    from zero). Inputs are raised, never the output lowered (a narrower range would push
    values past the 7-bit codes that keep AVX2 kernels exact); a raised input that is itself
    a sum raises its own inputs in turn (last additions first). ``larger``: ``max``, or its
    tensor version (``qsim``)."""
    out = dict(scales)
    for total, inputs in reversed(additions):
        for name in inputs:
            out[name] = larger(out[name], out[total])
    return out


#: A tensor the pass rescales (``rescalable``): its name, the convolution that writes it and
#: the convolutions that read it (ONNX node names).
Rescaled = tuple[str, str, tuple[str, ...]]


def rescalable(model: onnx.ModelProto) -> list[Rescaled]:
    """The activations whose scale can become a power of two without being rounded up.

    Why: rounding an activation scale up to a power of two costs up to one bit of resolution,
    and on a ReLU6 output it cuts the range (6/255 becomes 2**-6: values clip at 4, where the
    network clips at 6; measured on the float network, clipping the first depthwise output and
    the last 1x1's at 4 turns 6 of the 84 check images). Convolutions are linear and ReLU6's
    clip is the file's uint8 range, so a tensor written by one int8 convolution and read only
    by int8 convolutions can be multiplied by ``alpha = 2**floor(log2 s) / s`` (0.5..1): its
    writer's weight scales times ``alpha``, its readers' divided by it. Its new scale
    ``alpha * s`` is a power of two with the same codes; the network computes the same
    function. Tensors of residual additions (the stream: its scale is shared with ``tie_free``)
    and 7-bit ones are left to rounding."""
    arrays = {i.name for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    stream = {t for total, inputs in residual_additions(model) for t in (total, *inputs)}

    def int8_conv(node: onnx.NodeProto | None) -> bool:
        if node is None or node.op_type != "Conv" or len(node.input) < 2:
            return False
        weight = producers.get(node.input[1])
        return (
            weight is not None
            and weight.op_type == "DequantizeLinear"
            and (weight.input[0] in arrays)
        )

    found: list[Rescaled] = []
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in arrays or narrow.is_narrowed(q):
            continue
        tensor, writer = q.input[0], producers.get(q.input[0])
        if tensor in stream or writer is None or not int8_conv(writer):
            continue
        readers: list[onnx.NodeProto] = []
        for dq in consumers.get(q.output[0], []):
            uses = consumers.get(dq.output[0], []) if dq.op_type == "DequantizeLinear" else []
            if not uses or not all(int8_conv(r) and r.input[0] == dq.output[0] for r in uses):
                break
            readers += uses
        else:
            if readers:
                found.append((tensor, writer.name, tuple(r.name for r in readers)))
    return found


def rescale_factor(scale: float) -> float:
    """``alpha`` of ``rescalable``: what takes ``scale`` down to a power of two (exactly)."""
    s = float(np.float32(scale))
    return float(2.0 ** np.floor(np.log2(s))) / s


def is_dyadic(scale: np.ndarray | float, bits: int) -> bool:
    """Whether every scale already has at most ``bits`` significant bits."""
    s = np.asarray(scale, np.float32)
    return bool(np.all(dyadic_ceil(s, bits) == s))


def _activation_scales(model: onnx.ModelProto, arrays: dict[str, onnx.TensorProto]) -> set[str]:
    """Scale initializers of the Quantize/DequantizeLinear nodes of activations."""
    return {
        n.input[1]
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in arrays
    }


def _exact_float_stem(
    model: onnx.ModelProto,
    arrays: dict[str, onnx.TensorProto],
    producers: dict,
    strict: bool,
    prefix: exact_float.Plan | None = None,
) -> int:
    """Give a float stem int8-valued weights and bias and whole-grey-level padding (see the
    module docstring). Other float convolutions: with a ``prefix`` plan, a float prefix
    computed alike by both executions (``exact_float``); without, refused (``strict``; else
    left, and the stem, as they are). Returns the weights changed."""
    floats = exact_float.float_convolutions(model)
    first = next((n for n in model.graph.node if n.op_type == "Conv"), None)
    others = [n.name for n in floats if n is not first]
    if others and prefix is not None:
        before = {n.input[1]: numpy_helper.to_array(arrays[n.input[1]]) for n in floats}
        made = exact_float.rewrite(model, prefix)
        if strict and made < len(floats):
            raise SystemExit(f"{len(floats) - made} float convolutions read float tensors")
        whole_grey_padding(arrays, producers, first)
        after = {i.name: i for i in model.graph.initializer}
        return sum(
            int((numpy_helper.to_array(after[name]) != value).sum())
            for name, value in before.items()
        )
    if others and not strict:
        return 0
    if others:
        raise SystemExit(
            f"float convolutions besides the stem ({', '.join(others)}): their float sums "
            "depend on ONNX Runtime's kernels; quantize them (distill without a float prefix) "
            "or make them exact (``exact_float``)"
        )
    if not floats:
        return 0
    stem = floats[0]
    w = numpy_helper.to_array(arrays[stem.input[1]])
    # as ``quantize_static`` would, then ``dyadic_ceil``'s steps (``qsim._FakeQuantWeight``)
    scale = np.abs(w).reshape(len(w), -1).max(1).astype(np.float32) / np.float32(127)
    scale = np.maximum(scale, np.float32(1e-12)).reshape(-1, 1, 1, 1)
    q = np.clip(np.round(w / scale), -127, 127)
    wide = dyadic_ceil(scale, WEIGHT_SCALE_BITS).astype(np.float64)
    q = np.clip(np.round(q * (scale.astype(np.float64) / wide)), -127, 127)
    new_w = (q * wide).astype(np.float32)
    changed = int((new_w != w).sum())
    arrays[stem.input[1]].CopyFrom(numpy_helper.from_array(new_w, stem.input[1]))
    if len(stem.input) > 2:
        b = numpy_helper.to_array(arrays[stem.input[2]]).astype(np.float64)
        steps = wide.ravel()
        new_b = (np.round(b / steps) * steps).astype(np.float32)
        arrays[stem.input[2]].CopyFrom(numpy_helper.from_array(new_b, stem.input[2]))
    whole_grey_padding(arrays, producers, stem)
    return changed


def whole_grey_padding(
    arrays: dict[str, onnx.TensorProto], producers: dict, stem: onnx.NodeProto | None
) -> None:
    """Round the padding constants expanded into the stem's input (``wrapper.MeanPad``) to
    whole grey levels, so the stem reads integers only."""
    pending, seen = [stem.input[0]] if stem is not None else [], set()
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        for name in node.input:
            if node.op_type == "Expand" and name in arrays and name == node.input[0]:
                value = numpy_helper.to_array(arrays[name])
                arrays[name].CopyFrom(numpy_helper.from_array(np.round(value), name))
            else:
                pending.append(name)


def make_dyadic(
    model: onnx.ModelProto, strict: bool = True, prefix: exact_float.Plan | None = None
) -> dict[str, int]:
    """Rewrite ``model`` in place (see the module docstring); returns what changed, counted.

    ``prefix``: a float prefix is made exact under that plan (``exact_float``).
    ``strict=False`` without them: a file with float layers besides the stem keeps them (it
    is then not exact: a yardstick to compare a dyadic student with, never to ship)."""
    arrays = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}

    def get(name: str) -> np.ndarray:
        return numpy_helper.to_array(arrays[name])

    def put(name: str, value: np.ndarray) -> None:
        arrays[name].CopyFrom(numpy_helper.from_array(value, name))

    counts = {"activation_scales": 0, "addition_scales": 0, "zero_points": 0, "layers": 0}
    counts["weights_changed"] = 0
    counts["weights_changed"] += _exact_float_stem(model, arrays, producers, strict, prefix)
    arrays = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    # Rescaled tensors first (``rescalable``): their new scales are powers of two already.
    # The factor each layer's weights take: its output's alpha over its input's.
    out_alpha: dict[str, float] = {}
    in_alpha: dict[str, float] = {}
    counts["rescaled"] = 0
    for tensor, writer, readers in rescalable(model):
        quantizer = next(
            n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor
        )
        alpha = rescale_factor(float(get(quantizer.input[1])))
        if alpha == 1.0:
            continue
        names = {quantizer.input[1]} | {
            n.input[1]
            for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] == quantizer.output[0]
        }
        for name in names:
            put(name, (get(name).astype(np.float64) * alpha).astype(np.float32))
        out_alpha[writer] = alpha
        for reader in readers:
            in_alpha[reader] = alpha
        counts["rescaled"] += 1
    for name in sorted(_activation_scales(model, arrays)):
        old = get(name)
        new = dyadic_ceil(old, ACTIVATION_SCALE_BITS).reshape(old.shape)
        if not np.array_equal(old, new):
            put(name, new)
            counts["activation_scales"] += 1
    quantizers = {
        n.input[0]: n
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in arrays
    }
    file_scales = {t: float(get(q.input[1])) for t, q in quantizers.items()}
    for tensor, value in tie_free(file_scales, residual_additions(model)).items():
        if value != file_scales[tensor]:
            put(quantizers[tensor].input[1], np.asarray(value, np.float32))
            counts["addition_scales"] += 1
    for q in model.graph.node:
        source = producers.get(q.input[0])
        if q.op_type != "QuantizeLinear" or source is None or source.op_type != "Add":
            continue
        zero_point = get(q.input[2])
        if int(zero_point) % 2:
            put(q.input[2], even_zero_point(zero_point))
            counts["zero_points"] += 1
    for layer in model.graph.node:
        if layer.op_type not in ("Conv", "Gemm", "MatMul") or len(layer.input) < 2:
            continue
        x_dq, w_dq = producers.get(layer.input[0]), producers.get(layer.input[1])
        if w_dq is None or w_dq.op_type != "DequantizeLinear" or w_dq.input[0] not in arrays:
            continue  # a float layer
        if x_dq is None or x_dq.op_type != "DequantizeLinear":
            raise SystemExit(f"{layer.name}: int8 weights on a float input; not supported")
        q, scale = get(w_dq.input[0]), get(w_dq.input[1]).astype(np.float64)
        alpha = out_alpha.get(layer.name, 1.0)
        scale = scale * (alpha / in_alpha.get(layer.name, 1.0))
        new_scale = dyadic_ceil(scale, WEIGHT_SCALE_BITS).astype(np.float64)
        axis = next((a.i for a in w_dq.attribute if a.name == "axis"), 1) if scale.ndim else 0
        shape = [1] * q.ndim
        if scale.ndim:
            shape[axis % q.ndim] = -1
        ratio = (scale / new_scale).reshape(shape)
        new_q = np.clip(np.round(q.astype(np.float64) * ratio), -127, 127).astype(q.dtype)
        counts["weights_changed"] += int((new_q != q).sum())
        put(w_dq.input[0], new_q)
        put(w_dq.input[1], new_scale.astype(np.float32))
        counts["layers"] += 1
        bias = producers.get(layer.input[2]) if len(layer.input) > 2 else None
        if bias is None or bias.op_type != "DequantizeLinear" or bias.input[0] not in arrays:
            continue
        b, b_scale = get(bias.input[0]).astype(np.float64), get(bias.input[1]).astype(np.float64)
        b_scale = b_scale * alpha
        new_b_scale = float(get(x_dq.input[1])) * new_scale
        put(bias.input[0], np.round(b * b_scale / new_b_scale).astype(np.int32))
        put(bias.input[1], new_b_scale.astype(np.float32))
    return counts


def dyadic_file(
    src: Path,
    out: Path,
    version: str | None,
    strict: bool = True,
    prefix: exact_float.Plan | None = None,
) -> dict[str, int]:
    """Write the rewritten, re-stamped twin of ``src`` to ``out``, marked when ``strict``."""
    model = onnx.load(str(src))
    counts = make_dyadic(model, strict, prefix)
    marks = {INT8_SCALES_KEY: INT8_SCALES_DYADIC} if strict else {}
    narrow.save_rewritten(model, out, version, marks)
    return counts


add_arguments = narrow.add_arguments


def run(args: argparse.Namespace) -> int:
    """Rewrite, stamp, say what changed."""
    out = args.out or args.model
    counts = dyadic_file(args.model, out, args.version)
    print(
        f"{out}: {counts['rescaled']} activations rescaled to powers of two, "
        f"{counts['activation_scales']} activation scales rounded up to powers of two, "
        f"{counts['addition_scales']} scales around additions tied, "
        f"{counts['zero_points']} zero points of additions made even, "
        f"{counts['layers']} layers' weight scales to {WEIGHT_SCALE_BITS} bits "
        f"({counts['weights_changed']} weights changed); sha {stamp(out)}"
    )
    return 0
