"""``narrow-inputs``: 7-bit activations into the int8 matrix products, for exact AVX2 kernels.

Why: ONNX Runtime's U8S8 kernels on x86 CPUs without VNNI (AVX2-only, AVX-512 without VNNI)
add pairs of uint8 x int8 products in saturating 16-bit arithmetic (``vpmaddubsw``). With
activations up to 255 and weights up to 127 a pair reaches 64,770, twice what 16 bits hold, and
answers change with the CPU. ONNX Runtime's exact U8U8 path costs 14-29 % of inference time
there (``notes/int8_on_every_cpu.md``). Halving the activations' range instead (uint8 values
0..128 where the calibrated range was 0..255) keeps every pair within 16 bits
(2 x 128 x 127 = 32,512 < 32,767) while the values stay inside the calibrated range, so the
fast kernels give the exact answers and the file is the same on every CPU.

What changes: each uint8 QuantizeLinear whose DequantizeLinear feeds the data input of a
convolution with more than one input channel per group (depthwise convolutions run other
kernels, exact on every CPU) or of a Gemm/MatMul gets twice the scale and half the zero point,
in the QuantizeLinear and in its DequantizeLinear nodes alike, and the consuming layer's int32
bias is requantized to match. The producing layer's integer kernel then writes the coarser
values itself: every layer stays fused and the speed is unchanged (the one step added at run
time requantizes the pooled features between pooling and classifier, whose ``Flatten`` ONNX
Runtime's quantizer ties to the pooling's parameters). What it costs: activations entering
those layers lose one bit of resolution (the Fashion model 1.1.0: 95.52 % -> 95.29 % test
top-1; the distilled ImageNet model lost 3 of 84 check images, so it keeps 8 bits and the
exact path until a student is distilled for 7 bits: ``distill --dense-input-bits 7``). Values
above twice the calibrated range still reach 129..255 and may saturate a pair whose weights
are both large: the cross-CPU tests measure that on real images (Fashion-MNIST: the same
labels on all 10,000 test images, 9,998 of them bit-identical, probabilities within 5e-5 with
1.1.0; 9,970 and 0.002 with 1.2.0).

The file says so in ``metadata_props["int8_dense_input_bits"] = "7"``; serving then runs the
U8S8 kernels on every CPU (``media_classifier.inference.model.needs_exact_int8``).

    python -m model_build narrow-inputs --model FILE --version 1.1.0 [--out NEW]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from media_classifier.inference.model import DENSE_INPUT_BITS_KEY
from model_build.stamp import stamp

#: The metadata key and value serving reads (one definition, in the functions' model module).
NARROW_KEY, NARROW_VALUE = DENSE_INPUT_BITS_KEY, "7"
#: Suffix of the scale a narrowed QuantizeLinear reads: how a file tells its 7-bit inputs.
SEVEN_BIT_SCALE = "_scale7"


def is_narrowed(quantizer: onnx.NodeProto) -> bool:
    """Whether this QuantizeLinear was narrowed to 7 bits by this module."""
    return quantizer.input[1].endswith(SEVEN_BIT_SCALE)


def _is_dense(node: onnx.NodeProto) -> bool:
    """Whether the node's data input meets U8S8 matrix kernels (not a depthwise convolution)."""
    if node.op_type in ("Gemm", "MatMul"):
        return True
    if node.op_type != "Conv":
        return False
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return group == 1


def dense_input_quantizers(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, list]]:
    """Each uint8 QuantizeLinear feeding a dense layer's data input, with its DequantizeLinears."""
    init = {i.name for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = []
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or len(q.input) < 3 or q.input[2] not in init:
            continue
        dqs = [d for d in consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"]
        outputs = {d.output[0] for d in dqs}
        users = [u for o in outputs for u in consumers.get(o, [])]
        if any(_is_dense(u) and u.input[0] in outputs for u in users):
            found.append((q, dqs))
    return found


def narrow_dense_inputs(model: onnx.ModelProto, only: set[str] | None = None) -> list[str]:
    """Rewrite ``model`` in place (see the module docstring); returns the tensors narrowed.

    ``only``: narrow just these activations (QuantizeLinear inputs), e.g. those a student was
    distilled for at 7 bits while ``pair-order`` makes the others exact.

    Each consumer's int32 bias is requantized too: ONNX Runtime fuses DequantizeLinear ->
    Conv -> QuantizeLinear into its integer kernel only while the bias scale is the input
    scale times the weight scale (otherwise the layer silently runs in float, 1.7x slower).
    """
    arrays = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    narrowed = []
    for q, dqs in dense_input_quantizers(model):
        zero_point = numpy_helper.to_array(arrays[q.input[2]])
        if zero_point.dtype != np.uint8 or (only is not None and q.input[0] not in only):
            continue
        scale = numpy_helper.to_array(arrays[q.input[1]])
        names = (f"{q.output[0]}{SEVEN_BIT_SCALE}", f"{q.output[0]}_zero_point7")
        half_zero = np.round(zero_point.astype(np.float64) / 2).astype(np.uint8)
        model.graph.initializer.extend(
            [
                numpy_helper.from_array((scale * 2).astype(scale.dtype), names[0]),
                numpy_helper.from_array(half_zero, names[1]),
            ]
        )
        for node in [q, *dqs]:
            node.input[1], node.input[2] = names
        outputs = {d.output[0] for d in dqs}
        for user in (u for o in outputs for u in consumers.get(o, [])):
            if _is_dense(user) and user.input[0] in outputs and len(user.input) > 2:
                _halve_bias(model, arrays, producers.get(user.input[2]), consumers)
        narrowed.append(q.output[0])
    used = {i for n in model.graph.node for i in n.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return narrowed


def _halve_bias(
    model: onnx.ModelProto,
    arrays: dict[str, onnx.TensorProto],
    dq: onnx.NodeProto | None,
    consumers: dict[str, list[onnx.NodeProto]],
) -> None:
    """Requantize an int32 bias for twice the input scale: ``round(q / 2)`` at twice the scale."""
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in arrays:
        return
    values = numpy_helper.to_array(arrays[dq.input[0]])
    if values.dtype != np.int32:
        return
    if len(consumers.get(dq.output[0], [])) != 1 or len(consumers.get(dq.input[0], [])) != 1:
        raise SystemExit(f"{dq.input[0]}: a bias shared between layers; not narrowed")
    scale = numpy_helper.to_array(arrays[dq.input[1]])
    names = (f"{dq.input[0]}_7", f"{dq.input[1]}_7")
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.round(values / 2).astype(np.int32), names[0]),
            numpy_helper.from_array((scale * 2).astype(scale.dtype), names[1]),
        ]
    )
    dq.input[0], dq.input[1] = names


def set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    """Add or replace one ``metadata_props`` entry."""
    for entry in model.metadata_props:
        if entry.key == key:
            entry.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value


def narrow_file(
    src: Path, out: Path, version: str | None, only: set[str] | None = None
) -> list[str]:
    """Write the narrowed, re-stamped twin of ``src`` to ``out``; refuses a narrowed file.

    The file says ``NARROW_KEY`` only when every dense input got 7 bits (``only`` left out)."""
    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get(NARROW_KEY) == NARROW_VALUE:
        raise SystemExit(f"{src.name}: already narrowed")
    narrowed = narrow_dense_inputs(model, only)
    if not narrowed:
        raise SystemExit(f"{src.name}: no uint8 activation enters a dense layer")
    save_rewritten(model, out, version, {NARROW_KEY: NARROW_VALUE} if only is None else {})
    return narrowed


def save_rewritten(
    model: onnx.ModelProto, out: Path, version: str | None, marks: dict[str, str]
) -> None:
    """Save a rewritten int8 file: its metadata ``marks`` and version, checked and stamped."""
    for key, value in marks.items():
        set_metadata(model, key, value)
    if version:
        set_metadata(model, "version", version)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    stamp(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``narrow-inputs`` (and ``pair-order``): a file in, a file out."""
    p.add_argument("--model", type=Path, required=True, help="an int8 QDQ file (U8S8)")
    p.add_argument("--out", type=Path, default=None, help="default: replace --model")
    p.add_argument("--version", default=None, help="the new file's version (metadata)")


def run(args: argparse.Namespace) -> int:
    """Narrow, stamp, say what changed."""
    out = args.out or args.model
    narrowed = narrow_file(args.model, out, args.version)
    print(f"{out}: {len(narrowed)} activations narrowed to 7 bits; sha {stamp(out)}")
    return 0
