"""The optional ``embedding`` output: what a model "sees" in a picture, for finding it again.

A classifier's pooled features (MobileNetV2: the 1280 averages of its last feature maps, the
input of the final linear layer) describe a picture far more finely than its top labels do: a
re-encoded, resized, cropped or mirrored copy of a photo lands next to the original, a
different photo of the same kind of thing further away. The contract exposes them as a second
graph output, so the functions get them from the same inference that labels the upload:

* output ``embedding``: float32 ``[N, D]``, ``D <= 2048`` (Firestore's vector limit), each row
  L2-normalized inside the graph, so the cosine similarity of two pictures is the dot product
  of their embeddings;
* ``metadata_props["embedding"] = "l2"`` (the output exists and its rows have unit length);
* ``metadata_props["duplicate_threshold"]``: the cosine similarity at or above which two
  pictures count as the same picture for this model, a decimal string chosen on measured data
  (``python -m model_build retrieval``; absent until measured).

Why a graph edit rather than a re-export: the shipped files are int8 graphs whose weights and
activation scales were tuned (quantization-aware distillation); re-exporting would redo all of
it. The edit only *adds* nodes that read the pooled features where the classifier reads them,
so every node of the classifier computes exactly what it did: ``add-embedding`` proves it bit
for bit on real images, optimized and reference execution, before it writes a file.
``export`` adds the same nodes to every model it builds (``onnx_export.export_serving``), and
``quantize_int8`` quantizes the classifier alone and then adds them again, so fp32 and int8
files carry the same output, computed by the same nodes.

    python -m model_build add-embedding functions/models/imagenet_mobilenet_v2.int8.onnx
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_build.contract import OUTPUT_NAME

EMBEDDING_OUTPUT = "embedding"
#: ``metadata_props`` key saying the file has the output, and how its rows are normalized.
EMBEDDING_KEY = "embedding"
EMBEDDING_NORM = "l2"
THRESHOLD_KEY = "duplicate_threshold"
#: Firestore vector fields hold at most 2048 dimensions.
MAX_DIM = 2048
#: Every node this module adds is named under this prefix, so it can be found and removed.
PREFIX = "embedding/"


class NoPooledFeatures(ValueError):
    """The graph has no recognisable classifier head to take the pooled features from."""


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _classifier(model: onnx.ModelProto) -> onnx.NodeProto:
    """The ``Gemm`` (or ``MatMul``) whose logits the ``Softmax`` turns into the probabilities."""
    made_by = _producers(model.graph)
    softmax = made_by.get(OUTPUT_NAME)
    if softmax is None or softmax.op_type != "Softmax":
        raise NoPooledFeatures(f"output {OUTPUT_NAME!r} is not made by a Softmax")
    logits = made_by.get(softmax.input[0])
    if logits is not None and logits.op_type == "Add":  # MatMul + Add heads
        logits = next((made_by.get(i) for i in logits.input if i in made_by), None)
    if logits is None or logits.op_type not in ("Gemm", "MatMul"):
        raise NoPooledFeatures("the probabilities are not a Softmax of a Gemm/MatMul")
    if logits.input[0] not in made_by:
        raise NoPooledFeatures("the classifier reads the graph input directly")
    return logits


def pooled_tensor(model: onnx.ModelProto) -> str:
    """The tensor the embedding is taken from: the pooled features, as the classifier reads them.

    The first input of the ``Gemm`` (or ``MatMul``) that computes the logits. In a float file
    that is the flattened output of the global pooling; in an int8 file, the dequantized 8-bit
    copy of it that the int8 classifier reads. Why not the pooling's float output there: a
    second reader of it stops ONNX Runtime from fusing the pooling with its quantization
    (``QLinearGlobalAveragePool``) and the probabilities moved by up to 2e-4 (measured on the
    shipped ImageNet file), while the 8-bit copy lost almost nothing (cosine >= 0.999 to the
    float pooling's embedding on the sample photos and frames).
    """
    return _classifier(model).input[0]


def feature_count(model: onnx.ModelProto) -> int:
    """How many pooled features the classifier reads: from its weight matrix (stored, or
    dequantized from a stored int8 one), else from shape inference."""
    node = _classifier(model)
    inits = {i.name: i for i in model.graph.initializer}
    made_by = _producers(model.graph)
    weight = node.input[1]
    if weight not in inits and weight in made_by and made_by[weight].op_type == "DequantizeLinear":
        weight = made_by[weight].input[0]
    if weight in inits and len(inits[weight].dims) == 2:
        rows, cols = inits[weight].dims
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        return int(cols if node.op_type == "Gemm" and trans_b else rows)
    inferred = onnx.shape_inference.infer_shapes(model)
    for info in [*inferred.graph.value_info, *inferred.graph.output]:
        if info.name == node.input[0]:
            dims = info.type.tensor_type.shape.dim
            if len(dims) >= 2 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    raise NoPooledFeatures(f"the pooled features {node.input[0]!r} have no static size")


def has_embedding(model: onnx.ModelProto) -> bool:
    """Whether the graph has the ``embedding`` output."""
    return any(o.name == EMBEDDING_OUTPUT for o in model.graph.output)


def strip_embedding(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without the ``embedding`` output, its nodes and its metadata (the classifier only).

    Why: quantization must see the classifier alone (calibration, the ops it quantizes, the
    activation scales a distilled student trained with); the output is added again afterwards.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    keep = [n for n in graph.node if not n.name.startswith(PREFIX)]
    del graph.node[:]
    graph.node.extend(keep)
    outputs = [o for o in graph.output if o.name != EMBEDDING_OUTPUT]
    del graph.output[:]
    graph.output.extend(outputs)
    inits = [i for i in graph.initializer if not i.name.startswith(PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    props = [p for p in out.metadata_props if p.key not in (EMBEDDING_KEY, THRESHOLD_KEY)]
    del out.metadata_props[:]
    out.metadata_props.extend(props)
    return out


def add_embedding(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with the ``embedding`` output and ``metadata_props["embedding"] = "l2"``.

    Nodes: ``Flatten`` of the pooled tensor, ``ReduceL2`` over the features, ``Max`` with a
    tiny floor (an all-zero feature vector gives zeros, not NaN), ``Div``. Nothing that
    existed is changed or rewired. Any previous embedding is replaced, and its
    ``duplicate_threshold`` dropped (it belongs to the features it was measured on; the
    command keeps it when the new nodes are the same).
    """
    out = strip_embedding(model)
    pooled = pooled_tensor(out)
    dim = feature_count(out)
    if dim > MAX_DIM:
        raise NoPooledFeatures(f"{dim} pooled features: more than {MAX_DIM} (Firestore's limit)")
    flat, norm, floor, clamped = (f"{PREFIX}{s}" for s in ("flat", "norm", "floor", "clamped"))
    graph = out.graph
    graph.initializer.append(numpy_helper.from_array(np.array(1e-12, np.float32), floor))
    graph.node.extend(
        [
            helper.make_node("Flatten", [pooled], [flat], name=f"{PREFIX}Flatten", axis=1),
            helper.make_node(
                "ReduceL2", [flat], [norm], name=f"{PREFIX}ReduceL2", axes=[1], keepdims=1
            ),
            helper.make_node("Max", [norm, floor], [clamped], name=f"{PREFIX}Max"),
            helper.make_node("Div", [flat, clamped], [EMBEDDING_OUTPUT], name=f"{PREFIX}Div"),
        ]
    )
    batch = graph.output[0].type.tensor_type.shape.dim[0]
    first = batch.dim_param or (batch.dim_value if batch.HasField("dim_value") else None)
    graph.output.append(
        helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, [first, dim])
    )
    set_props(out, {EMBEDDING_KEY: EMBEDDING_NORM})
    onnx.checker.check_model(out)
    return out


def set_props(model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Set (add or replace) ``metadata_props`` entries in place, keeping the others' order."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value


def format_threshold(value: float) -> str:
    """The metadata string of a threshold: plain decimal, 4 places (``"0.9000"``)."""
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise ValueError(f"a cosine similarity threshold lies in [-1, 1], not {value}")
    return f"{value:.4f}"


def set_threshold(path: Path, value: float | None) -> str:
    """Write ``duplicate_threshold`` (``None``: remove it) into a file that has the embedding;
    returns its sha.

    Only metadata changes, so the content hash (``sha``) stays: the graph and weights, hence
    every output, are the same.
    """
    from media_classifier.inference import identity

    data = path.read_bytes()
    props = identity.metadata(data)
    if props.get(EMBEDDING_KEY) != EMBEDDING_NORM:
        raise ValueError(f"{path.name} has no embedding output: run add-embedding first")
    model = onnx.load_from_string(data)
    if value is None:
        kept = [p for p in model.metadata_props if p.key != THRESHOLD_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
    else:
        set_props(model, {THRESHOLD_KEY: format_threshold(value)})
    _write(path, model)
    return identity.content_sha(path.read_bytes())


def float_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """The int8 graph with its activations unrounded: each activation QuantizeLinear /
    DequantizeLinear pair replaced by a ``Clip`` to the range the pair can represent, the
    weights kept as the file stores them (dequantized int8).

    Why: the float function of the very weights the int8 file holds, the reference its
    activation rounding is measured against (a file shipped without its float source, like the
    Fashion-MNIST model, has no other). Why the ``Clip``: ONNX Runtime's quantizer drops the
    ReLU6 of MobileNetV2 and lets the uint8 range do the clamping, so the range must stay.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quant = {
        n.output[0]: n
        for n in graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits
    }
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.output[0] in quant:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in quant:
            q = quant[node.input[0]]
            scale, zero = float(inits[q.input[1]]), int(inits[q.input[2]])
            info = np.iinfo(inits[q.input[2]].dtype)
            lo, hi = f"{node.output[0]}/lo", f"{node.output[0]}/hi"
            for name, level in ((lo, info.min), (hi, info.max)):
                value = np.array((level - zero) * scale, np.float32)
                graph.initializer.append(numpy_helper.from_array(value, name))
            nodes.append(
                helper.make_node("Clip", [q.input[0], lo, hi], [node.output[0]], name=node.name)
            )
            continue
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return out


def _same_graph(a: onnx.ModelProto, b: onnx.ModelProto) -> bool:
    """Whether two models have the same content hash (graph and weights; not metadata)."""
    from media_classifier.inference import identity

    return identity.content_sha(a.SerializeToString()) == identity.content_sha(
        b.SerializeToString()
    )


def _write(path: Path, model: onnx.ModelProto) -> None:
    """Save atomically and stamp the content hash (``model_build.stamp``)."""
    from model_build.stamp import stamp

    tmp = path.with_name(path.name + ".writing")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    stamp(path)


# --- the command -----------------------------------------------------------------------------


def check_images(size: tuple[int, int], policy: str) -> np.ndarray:
    """Real inputs for the before/after proof: the sample photos and frames of the sample
    clips, through the serving decode and resize."""
    from model_build import samples
    from model_build.serving import prepare_image

    items = samples.photos() + samples.video_frames(8)
    return np.stack([prepare_image(s.data, size, policy) for s in items])


def outputs(
    model: onnx.ModelProto, x: np.ndarray, *, reference: bool = False
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every output for ``x``: run as one batch, and run one image at a time (concatenated)."""
    import onnxruntime as ort

    from media_classifier.inference.model import session_options

    sess = ort.InferenceSession(
        model.SerializeToString(),
        session_options(None, reference=reference),
        providers=["CPUExecutionProvider"],
    )
    names = [o.name for o in sess.get_outputs()]
    feed = sess.get_inputs()[0].name
    whole = sess.run(names, {feed: x})
    single = [sess.run(names, {feed: x[i : i + 1]}) for i in range(len(x))]
    return whole, [np.concatenate(parts) for parts in zip(*single, strict=True)]


def prove_unchanged(before: onnx.ModelProto, after: onnx.ModelProto, x: np.ndarray) -> dict:
    """Probabilities of ``after`` bit-identical to ``before``'s on ``x``, optimized (what serving
    runs) and reference execution, whole batch and batch 1; plus the embedding's norms.

    Raises ``AssertionError`` on any difference, so nothing is written.
    """
    report: dict = {"images": len(x)}
    for reference in (False, True):
        old_whole, old_single = outputs(before, x, reference=reference)
        new_whole, new_single = outputs(after, x, reference=reference)
        for a, b in ((old_whole[0], new_whole[0]), (old_single[0], new_single[0])):
            if not np.array_equal(a, b):
                raise AssertionError(
                    f"probabilities changed (reference={reference}): max diff "
                    f"{float(np.abs(a - b).max())}"
                )
        emb = new_whole[1]
        norms = np.linalg.norm(emb, axis=1)
        report["reference" if reference else "optimized"] = {
            "probabilities_bit_identical": True,
            "embedding_norm_range": [float(norms.min()), float(norms.max())],
            "batch1_vs_batch_max_abs_diff": float(np.abs(new_single[1] - emb).max()),
        }
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``add-embedding``."""
    p.add_argument("files", nargs="+", type=Path, help="ONNX model files (edited in place)")
    p.add_argument(
        "--duplicate-threshold",
        type=float,
        default=None,
        help="also store this cosine similarity as duplicate_threshold (see `retrieval`)",
    )


def run(args: argparse.Namespace) -> int:
    """Add (or replace) the output, prove the probabilities unchanged, write and re-stamp."""
    import json

    from model_build.onnx_export import read_metadata
    from model_build.stamp import check

    for path in args.files:
        before = onnx.load(str(path))
        old_sha = check(path) or "unstamped"
        meta = read_metadata(path)
        after = add_embedding(before)
        threshold = {p.key: p.value for p in before.metadata_props}.get(THRESHOLD_KEY)
        if args.duplicate_threshold is not None:
            set_props(after, {THRESHOLD_KEY: format_threshold(args.duplicate_threshold)})
        elif threshold is not None and _same_graph(before, after):
            # The very output it was measured on: the measurement still holds.
            set_props(after, {THRESHOLD_KEY: threshold})
        x = check_images(meta.input_size, meta.resize)
        report = prove_unchanged(strip_embedding(before), after, x)
        _write(path, after)
        dim = after.graph.output[-1].type.tensor_type.shape.dim[1].dim_value
        report |= {"file": path.name, "dim": dim, "bytes": path.stat().st_size}
        report |= {"sha_before": old_sha, "sha_after": check(path)}
        print(json.dumps(report))
    return 0
