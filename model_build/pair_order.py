"""``pair-order``: reorder channels so that ONNX Runtime's AVX2 int8 kernels cannot saturate.

Why: on x86 CPUs without VNNI the U8S8 kernels add the products of *neighbouring* weights along
the reduction axis in saturating 16-bit arithmetic (``vpmaddubsw``; ``notes/int8_on_every_cpu.md``).
A pair of weights of one sign with ``|w0| + |w1| <= 128`` cannot saturate for any uint8
activation (255 x 128 = 32,640 <= 32,767); weights of opposite signs never can. Which weights are
neighbours depends only on the order of the layer's input channels, and that order is free
wherever the channels are written by layers of the file and read by others: permuting a
convolution's output channels (weights, bias, per-channel scales), the depthwise convolutions
after it, and the next layers' input channels alike computes the same function. Integer sums do
not depend on their order, so every exact kernel (VNNI, AMX, ARM64, U8U8) gives the same results
bit for bit, and the AVX2 kernels now give them too.

How: for each such group of channels, a minimum-excess perfect matching of its channels
(``networkx``'s blossom algorithm on the pairs that fit the bound in every reading layer plus
each channel's cheapest partners), improved by exchanging partners; whatever pair still
exceeds the bound is scaled down to it (the only change to any result; counted and printed).
Dense inputs with 7 bits (``narrow-inputs``) cannot saturate and are left alone; 8-bit inputs
of layers other than 1x1 convolutions and Gemm are reported, not reordered. The file then says
``int8_u8s8_pairs = fit`` (``media_classifier.inference.model.U8S8_PAIRS_KEY``) once every
dense layer is checked safe (:func:`unsafe_layers`), and serving runs the U8S8 kernels on every
CPU.

    python -m model_build pair-order --model FILE --version 1.1.0 [--out NEW]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
from onnx import numpy_helper

from media_classifier.inference.model import U8S8_PAIRS_KEY, U8S8_PAIRS_VALUE
from model_build import narrow
from model_build.narrow import is_narrowed, save_rewritten
from model_build.stamp import stamp

_INT16_MAX = 32_767
#: Largest ``|w0| + |w1|`` of a same-sign pair that no uint8 activation can saturate (128).
PAIR_BOUND = _INT16_MAX // 255
#: Cheapest partners per channel offered to the matching besides all pairs of no cost.
_PARTNERS = 12
_PASS_THROUGH = ("QuantizeLinear", "DequantizeLinear", "Relu", "Clip", "GlobalAveragePool")


def _group_attr(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def is_dense(node: onnx.NodeProto) -> bool:
    """A layer ONNX Runtime runs as a matrix product (not a depthwise convolution)."""
    return node.op_type == "Gemm" or (node.op_type == "Conv" and _group_attr(node) == 1)


def pair_excess(weights: np.ndarray) -> np.ndarray:
    """How far each same-sign neighbouring pair exceeds the bound: ``[M, ceil(K / 2)]``.

    ``weights`` is ``[M, K]`` int8 in the kernels' reduction order; an odd K pairs its last
    weight with the kernels' zero padding."""
    w = weights.astype(np.int32)
    if w.shape[1] % 2:
        w = np.pad(w, ((0, 0), (0, 1)))
    a, b = w[:, 0::2], w[:, 1::2]
    pos = np.maximum(a, 0) + np.maximum(b, 0)
    neg = np.maximum(-a, 0) + np.maximum(-b, 0)
    return np.maximum(pos - PAIR_BOUND, 0) + np.maximum(neg - PAIR_BOUND, 0)


def excess_matrix(layers: list[np.ndarray]) -> np.ndarray:
    """Total excess of channels i and j as neighbours, over the layers reading them ([C, C])."""
    n = layers[0].shape[1]
    cost = np.zeros((n, n))
    for w in layers:
        pos, neg = np.maximum(w, 0).astype(np.int32), np.maximum(-w, 0).astype(np.int32)
        for i in range(n):
            cost[i] += np.maximum(pos[:, i : i + 1] + pos - PAIR_BOUND, 0).sum(0)
            cost[i] += np.maximum(neg[:, i : i + 1] + neg - PAIR_BOUND, 0).sum(0)
    return cost


def best_order(cost: np.ndarray) -> np.ndarray:
    """A channel order whose neighbouring pairs ``(0, 1), (2, 3), ...`` add up to little cost.

    A minimum-cost perfect matching (``networkx``'s blossom algorithm) on a sparse graph:
    every pair of no cost plus each channel's cheapest partners; channels it leaves unmatched
    are paired greedily, heaviest first; then partners are exchanged between pairs while that
    lowers the total."""
    n = len(cost)
    np.fill_diagonal(cost := cost.copy(), np.inf)
    near = np.argsort(cost, axis=1)[:, :_PARTNERS]
    edges = {tuple(sorted(map(int, e))) for e in np.argwhere(cost == 0)}
    edges |= {tuple(sorted((i, int(j)))) for i in range(n) for j in near[i]}
    top = max(float(cost[i, j]) for i, j in edges) + 1
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from((i, j, top - cost[i, j]) for i, j in edges)
    pairs = [tuple(sorted(p)) for p in nx.max_weight_matching(graph, maxcardinality=True)]
    left = sorted(set(range(n)) - {i for p in pairs for i in p}, key=lambda i: -cost[i].sum())
    while len(left) > 1:
        i = left.pop(0)
        j = min(left, key=lambda k: cost[i, k])
        left.remove(j)
        pairs.append((i, j))
    a, b = np.array([p[0] for p in pairs], int), np.array([p[1] for p in pairs], int)
    while len(a) > 1:
        now = cost[a, b]
        base = now[:, None] + now[None, :]
        gains = [
            base - cost[a[:, None], a[None, :]] - cost[b[:, None], b[None, :]],
            base - cost[a[:, None], b[None, :]] - cost[b[:, None], a[None, :]],
        ]
        for g in gains:
            np.fill_diagonal(g, 0)
        k = int(np.argmax([g.max() for g in gains]))
        x, y = np.unravel_index(np.argmax(gains[k]), gains[k].shape)
        if gains[k][x, y] <= 0:
            break
        if k == 0:
            b[x], a[y] = a[y], b[x]
        else:
            b[x], b[y] = b[y], b[x]
    order = [i for p in zip(a, b, strict=True) for i in p] + left
    return np.array(order, dtype=np.int64)


def clip_pairs(weights: np.ndarray) -> tuple[np.ndarray, int]:
    """Scale each same-sign pair above the bound down to it (the larger keeps its share)."""
    w = weights.astype(np.int32)
    odd = w.shape[1] % 2
    if odd:
        w = np.pad(w, ((0, 0), (0, 1)))
    a, b = w[:, 0::2], w[:, 1::2]
    over = (a * b > 0) & (np.abs(a) + np.abs(b) > PAIR_BOUND)
    total = np.maximum(np.abs(a) + np.abs(b), 1)
    a_new = np.sign(a) * np.floor(np.abs(a) * PAIR_BOUND / total)
    b_new = np.sign(b) * (PAIR_BOUND - np.abs(a_new))
    w[:, 0::2] = np.where(over, a_new, a)
    w[:, 1::2] = np.where(over, b_new, b)
    return w[:, : weights.shape[1]].astype(weights.dtype), int(over.sum())


@dataclass
class _Graph:
    """The file's layers as this pass needs them: initializers and each tensor's producer."""

    model: onnx.ModelProto
    arrays: dict[str, onnx.TensorProto] = field(default_factory=dict)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.arrays = {i.name: i for i in self.model.graph.initializer}
        for node in self.model.graph.node:
            for out in node.output:
                self.producer[out] = node

    def array(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.arrays[name])

    def quantized(self, name: str) -> onnx.NodeProto | None:
        """The DequantizeLinear of an int8/int32 initializer that yields ``name``, if any."""
        dq = self.producer.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in self.arrays:
            return dq
        return None

    def int8_weights(self, layer: onnx.NodeProto) -> np.ndarray | None:
        """A dense layer's int8 weights as ``[M, K]`` in input-channel order, or None."""
        dq = self.quantized(layer.input[1])
        if dq is None:
            return None
        w = self.array(dq.input[0])
        if w.dtype != np.int8:
            return None
        if layer.op_type == "Gemm":
            return w if _trans_b(layer) else w.T
        return w.reshape(w.shape[0], -1) if w.shape[2:] == (1, 1) else None

    def input_quantizer(self, layer: onnx.NodeProto) -> onnx.NodeProto | None:
        """The QuantizeLinear whose values a dense layer reads (through its DequantizeLinear)."""
        dq = self.producer.get(layer.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = self.producer.get(dq.input[0])
        return q if q is not None and q.op_type == "QuantizeLinear" else None


def _channel_groups(g: _Graph) -> tuple[dict[str, str], set[str]]:
    """Union-find of activation tensors that share one channel order; the roots that are fixed.

    Channel-wise operations join their input and output; a dense layer starts a new group at
    its output. Graph inputs and outputs, and tensors any other operation touches, are fixed."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    fixed: list[str] = [t.name for t in (*g.model.graph.input, *g.model.graph.output)]
    for node in g.model.graph.node:
        acts = [t for t in node.input if t and t not in g.arrays and g.quantized(t) is None]
        if not acts:
            continue  # a weight's DequantizeLinear
        if node.op_type in _PASS_THROUGH or (node.op_type == "Flatten" and _after_pooling(g, node)):
            join(node.output[0], acts[0])
        elif node.op_type == "Add" and len(acts) == 2:
            join(node.output[0], acts[0])
            join(node.output[0], acts[1])
        elif node.op_type == "Conv" and not is_dense(node):
            if _group_attr(node) != _channels(g, node):
                fixed += [*acts, *node.output]
            join(node.output[0], acts[0])
        elif not is_dense(node):
            fixed += [*acts, *node.output]
    return {t: find(t) for t in list(parent)}, {find(t) for t in fixed}


def _after_pooling(g: _Graph, node: onnx.NodeProto) -> bool:
    """A Flatten of pooled ``[N, C, 1, 1]`` features keeps C as its only axis."""
    src = g.producer.get(node.input[0])
    while src is not None and src.op_type in ("QuantizeLinear", "DequantizeLinear"):
        src = g.producer.get(src.input[0])
    return src is not None and src.op_type == "GlobalAveragePool"


def _channels(g: _Graph, conv: onnx.NodeProto) -> int:
    dq = g.quantized(conv.input[1])
    name = dq.input[0] if dq is not None else conv.input[1]
    return int(g.array(name).shape[0])


class _Permuter:
    """Collects one axis permutation per initializer, so a shared one is permuted once."""

    def __init__(self, g: _Graph) -> None:
        self.g = g
        self.pending: dict[str, tuple[int, np.ndarray]] = {}

    def add(self, name: str, axis: int, order: np.ndarray) -> None:
        if name not in self.g.arrays or self.g.array(name).ndim == 0:
            return  # a per-tensor scale or zero point: nothing to reorder
        if self.g.array(name).shape[axis] != len(order):
            raise SystemExit(f"{name}: axis {axis} is not the {len(order)} channels reordered")
        seen = self.pending.get(name)
        if seen is not None and (seen[0] != axis or not np.array_equal(seen[1], order)):
            raise SystemExit(f"{name}: shared by layers that need different channel orders")
        self.pending[name] = (axis, order)

    def tensor(self, name: str, axis: int, order: np.ndarray) -> None:
        """Permute a weight or bias input along ``axis``, through its DequantizeLinear: the
        values, and per-channel scales and zero points when they run along that axis."""
        dq = self.g.quantized(name)
        if dq is None:
            self.add(name, axis, order)
            return
        self.add(dq.input[0], axis, order)
        ndim = self.g.array(dq.input[0]).ndim
        per_channel = next((a.i for a in dq.attribute if a.name == "axis"), 1) % ndim
        if per_channel == axis:
            for part in dq.input[1:]:
                self.add(part, 0, order)

    def apply(self) -> None:
        for name, (axis, order) in self.pending.items():
            values = np.take(self.g.array(name), order, axis=axis)
            self.g.arrays[name].CopyFrom(numpy_helper.from_array(values, name))


def _reorder_group(g: _Graph, members: set[str], order: np.ndarray) -> None:
    """Give the channel group of tensors ``members`` the ``order``: its producers' outputs,
    its depthwise convolutions, its dense readers' inputs."""
    perm = _Permuter(g)
    for node in g.model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        # A Conv's weights are [out, in, ...]; a Gemm's [out, in] with transB, else [in, out].
        out_axis, in_axis = (1, 0) if node.op_type == "Gemm" and not _trans_b(node) else (0, 1)
        if node.output[0] in members:  # a dense or depthwise layer writing these channels
            perm.tensor(node.input[1], out_axis, order)
            if len(node.input) > 2:
                perm.tensor(node.input[2], 0, order)
        if node.input[0] in members and is_dense(node):
            perm.tensor(node.input[1], in_axis, order)
    perm.apply()


@dataclass
class Report:
    """What ``order_pairs`` did, per channel group, and what it left."""

    groups: list[dict] = field(default_factory=list)
    clipped: int = 0
    unsafe: list[str] = field(default_factory=list)


def _readers(g: _Graph, members: set[str]) -> list[onnx.NodeProto]:
    return [n for n in g.model.graph.node if is_dense(n) and n.input[0] in members]


def order_pairs(model: onnx.ModelProto, clip: bool = True) -> Report:
    """Reorder ``model``'s free channel groups in place (module docstring); clip what remains."""
    g = _Graph(model)
    root_of, fixed = _channel_groups(g)
    groups: dict[str, set[str]] = {}
    for t, r in root_of.items():
        groups.setdefault(r, set()).add(t)
    report = Report()
    for root, members in groups.items():
        readers = [n for n in _readers(g, members) if not _seven_bit(g, n)]
        weights = [g.int8_weights(n) for n in readers]
        if not readers or any(w is None for w in weights):
            continue
        layers = [w for w in weights if w is not None]
        before = sum(int(pair_excess(w).sum()) for w in layers)
        if root in fixed or before == 0:
            report.groups.append({"channels": layers[0].shape[1], "excess": [before, before]})
            continue
        order = best_order(excess_matrix(layers))
        _reorder_group(g, members, order)
        after = sum(int(pair_excess(w[:, order]).sum()) for w in layers)
        report.groups.append({"channels": len(order), "excess": [before, after]})
    if clip:
        report.clipped = _clip_all(g)
    report.unsafe = unsafe_layers(model)
    return report


def _seven_bit(g: _Graph, layer: onnx.NodeProto) -> bool:
    q = g.input_quantizer(layer)
    return q is not None and is_narrowed(q)


def _clip_all(g: _Graph) -> int:
    """Scale down the pairs still above the bound in every 8-bit-input dense layer."""
    clipped = 0
    for layer in (n for n in g.model.graph.node if is_dense(n) and not _seven_bit(g, n)):
        w = g.int8_weights(layer)
        dq = g.quantized(layer.input[1])
        if w is None or dq is None or not pair_excess(w).any():
            continue
        fixed_w, n = clip_pairs(w)
        clipped += n
        name = dq.input[0]
        if layer.op_type == "Gemm" and not _trans_b(layer):
            fixed_w = fixed_w.T
        shape = g.array(name).shape
        g.arrays[name].CopyFrom(numpy_helper.from_array(fixed_w.reshape(shape), name))
    return clipped


def _trans_b(layer: onnx.NodeProto) -> bool:
    return bool(next((a.i for a in layer.attribute if a.name == "transB"), 0))


def unsafe_layers(model: onnx.ModelProto) -> list[str]:
    """Dense int8 layers whose U8S8 products could saturate a pair: empty means exact on AVX2.

    Safe: 7-bit inputs (``narrow-inputs``), or int8 weights whose same-sign neighbours all keep
    ``|w0| + |w1| <= 128``. Layers with uint8 weights run the exact U8U8 kernels anyway."""
    g = _Graph(model)
    bad = []
    for layer in (n for n in model.graph.node if is_dense(n)):
        dq = g.quantized(layer.input[1])
        if dq is None or g.array(dq.input[0]).dtype != np.int8 or _seven_bit(g, layer):
            continue
        w = g.int8_weights(layer)
        if w is None or pair_excess(w).any():
            bad.append(layer.name)
    return bad


def order_file(src: Path, out: Path, version: str | None) -> Report:
    """Write the reordered, re-stamped twin of ``src`` to ``out``; marked only when safe."""
    model = onnx.load(str(src))
    report = order_pairs(model)
    marks = {} if report.unsafe else {U8S8_PAIRS_KEY: U8S8_PAIRS_VALUE}
    save_rewritten(model, out, version, marks)
    return report


add_arguments = narrow.add_arguments


def run(args: argparse.Namespace) -> int:
    """Reorder, stamp, say what changed and whether the file is now exact on AVX2."""
    out = args.out or args.model
    report = order_file(args.model, out, args.version)
    for group in report.groups:
        before, after = group["excess"]
        print(f"{group['channels']:5d} channels: pair excess {before} -> {after}")
    print(f"{report.clipped} weight pairs scaled down to |w0| + |w1| <= {PAIR_BOUND}")
    if report.unsafe:
        print(f"still able to saturate on AVX2 (not marked): {', '.join(report.unsafe)}")
        return 1
    print(f"{out}: every dense layer exact on U8S8 kernels; sha {stamp(out)}")
    return 0
