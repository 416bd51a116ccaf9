"""Static int8 quantization (QDQ, per-channel weights) calibrated on real images.

Only the network's own layers are quantized: the uint8->float cast, the normalization and the
final softmax stay in float, so the file keeps the contract (probabilities sum to 1) and the
first layer sees exactly the normalized input it was trained on.

Weights are symmetric int8 and activations uint8 (U8S8), the fastest kernels on CPUs with
AVX-512 VNNI, AMX or ARM64. On x86 CPUs without VNNI those kernels saturate; the serving code
asks ONNX Runtime for its exact U8U8 path there
(``media_classifier.inference.model.session_options``), so one file gives the same answers
everywhere (``model_build/notes/int8_on_every_cpu.md``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from model_build.contract import INPUT_NAME
from model_build.embedding import THRESHOLD_KEY, add_embedding, has_embedding, strip_embedding
from model_build.stamp import stamp

#: Activation calibration methods offered. Not ``Entropy``: through ``quantize_static`` (ORT
#: 1.31) its histogram has 128 bins for 128 quantized bins, so the KL search has a single
#: candidate, the full range, and it returns min/max exactly (measured: identical files; it
#: also fails on a last calibration batch of another size). ``quantize_static`` passes no option
#: to change the bin counts.
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
}


def even_batch(count: int, largest: int = 16) -> int:
    """The largest batch size up to ``largest`` that divides ``count`` (1 for a prime count).

    Why: ONNX Runtime's histogram calibrator (``percentile``) stacks every batch's outputs into
    one array and fails with "inhomogeneous shape" when the last batch is shorter.
    """
    return max(d for d in range(1, max(1, min(largest, count)) + 1) if count % d == 0)


class ArrayReader(CalibrationDataReader):
    """Feeds calibration images (uint8 NHWC) to the calibrator in equal batches."""

    def __init__(self, images: np.ndarray, batch: int = 16) -> None:
        self._images = images
        self._batch = even_batch(len(images), batch)
        self._it: Iterator[dict[str, np.ndarray]] = self._gen()

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self._images), self._batch):
            yield {INPUT_NAME: np.ascontiguousarray(self._images[i : i + self._batch])}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._gen()


def weight_sensitivity(fp32_path: Path, images: np.ndarray) -> list[tuple[float, str, int]]:
    """Rank Conv/Gemm nodes by how much int8 rounding of their weights alone changes the output.

    For each layer in turn, its weights are fake-quantized (per-channel, symmetric, 8 bit, as
    ``quantize_static`` does) and the mean KL divergence of the output probabilities from the
    float model's is measured on ``images`` (calibration images, never the check/test set).
    Why: in MobileNetV2 a handful of tiny early layers (depthwise 3x3 after BN folding) carry
    most of the quantization error; keeping just those in float costs a few kB.
    """
    from onnx import numpy_helper

    from model_build.onnx_export import run_onnx, session

    base = onnx.load(str(fp32_path))
    ref = run_onnx(session(fp32_path), images)
    inits = {i.name: i for i in base.graph.initializer}
    ranked = []
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        for node in base.graph.node:
            if node.op_type not in ("Conv", "Gemm") or node.input[1] not in inits:
                continue
            init = inits[node.input[1]]
            original = numpy_helper.to_array(init).copy()
            init.CopyFrom(numpy_helper.from_array(_fake_quant(original), init.name))
            onnx.save(base, str(probe))
            init.CopyFrom(numpy_helper.from_array(original, init.name))
            probs = run_onnx(session(probe), images)
            ranked.append((mean_kl(ref, probs), node.name, int(original.size)))
    return sorted(ranked, reverse=True)


def mean_kl(ref: np.ndarray, probs: np.ndarray) -> float:
    """Mean KL(ref || probs) over a batch of probability rows."""
    return float(np.sum(ref * (np.log(ref + 1e-12) - np.log(probs + 1e-12)), axis=1).mean())


def pick_float_layers(
    ranked: list[tuple[float, str, int]], max_layers: int, budget_bytes: int
) -> list[str]:
    """Most sensitive layers first, skipping any that would push the file over the budget.

    A float weight costs 3 bytes more than an int8 one, so the size budget decides.
    """
    keep, spent = [], 0
    for _, name, n_params in ranked:
        if len(keep) >= max_layers:
            break
        if spent + 3 * n_params <= budget_bytes:
            keep.append(name)
            spent += 3 * n_params
    return keep


def _fake_quant(w: np.ndarray) -> np.ndarray:
    """Symmetric per-output-channel int8 rounding of a weight tensor (axis 0)."""
    axes = tuple(range(1, w.ndim))
    scale = np.abs(w).max(axis=axes, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(w.dtype)


def conv_prefix(fp32_path: Path, count: int) -> list[str]:
    """Names of the first ``count`` convolutions in graph order: a float *prefix* to keep.

    Why a prefix: on MobileNetV2 the weight-rounding ranking (``weight_sensitivity``) puts the
    stem and the first two inverted-residual blocks on top (6 convolutions, 6.4 k weights,
    17 % of the multiply-adds). Kept float together, they leave one float->int8 boundary; a
    scattered choice of float layers left ONNX Runtime's output far worse than quantizing them
    (KL 0.29 vs 0.08 with only the first depthwise convolution float, measured).
    """
    model = onnx.load(str(fp32_path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type == "Conv"][:count]


def _stem_input(model: onnx.ModelProto, keep_float: list[str]) -> str | None:
    """The first Conv's input if it is raw 0..255 pixels (normalization folded into the stem)
    and that Conv is quantized.

    Why: those values are integers that uint8 holds exactly with scale 1 and zero point 0;
    calibration would pick a slightly different scale (or clip, with percentiles) and add about
    a grey level of rounding noise to every pixel.
    """
    for node in model.graph.node:
        if node.op_type == "Conv":
            return None if node.name in keep_float else node.input[0]
        if node.op_type in ("Sub", "Mul", "Div", "Add"):
            return None
    return None


def float_only_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes to leave in float: everything before the first Conv (cast, normalize) and Softmax."""
    names = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            break
        names.append(node.name)
    names += [n.name for n in model.graph.node if n.op_type == "Softmax"]
    return names


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    calibration: np.ndarray,
    method: str = "minmax",
    per_channel: bool = True,
    keep_float: list[str] | None = None,
    percentile: float = 99.999,
    activation_overrides: dict[str, tuple[float, int]] | None = None,
) -> Path:
    """Write the int8 QDQ twin of ``fp32_path`` (metadata_props are carried over, and the
    ``sha`` is the int8 file's own content hash, see ``model_build.stamp``).

    ``keep_float``: node names left unquantized (see ``weight_sensitivity``, ``conv_prefix``).
    ``percentile``: for ``method="percentile"``, the share of each activation's calibration
    histogram kept inside the int8 range. Why tunable: on MobileNetV2 99.99 clips a few rare
    outliers and gives the common values finer steps, which kept top-1 closer to the float
    model on the calibration images than 99.999 did. ``activation_overrides``: tensor ->
    (scale, zero point) that replace calibration (the scales a distilled student trained with).

    An ``embedding`` output (``model_build.embedding``) is taken off before quantizing, so the
    classifier is quantized exactly as it would be without it, and added again to the int8
    graph, where it reads the float output of the pooling. A ``duplicate_threshold`` is not
    carried over: it belongs to the features it was measured on.
    """
    fp32 = onnx.load(str(fp32_path))
    with tempfile.TemporaryDirectory() as tmp:
        source = fp32_path
        if has_embedding(fp32):
            source = Path(tmp) / "classifier.onnx"
            onnx.save(strip_embedding(fp32), str(source))
        pre = Path(tmp) / "pre.onnx"
        # Shape inference + graph optimisation first, as ONNX Runtime recommends for QDQ.
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=False)
        pre_model = onnx.load(str(pre))
        extra: dict = {
            "ActivationSymmetric": False,
            "WeightSymmetric": True,
            # Logits stay float: 256 levels over the logit range flip near-ties between classes.
            "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"],
        }
        if method == "percentile":
            extra["CalibPercentile"] = percentile
        fixed = dict(activation_overrides or {})
        stem = _stem_input(pre_model, list(keep_float or ()))
        if stem is not None:
            fixed.setdefault(stem, (1.0, 0))
        if fixed:
            extra["TensorQuantOverrides"] = {
                name: [{"scale": np.array(s, np.float32), "zero_point": np.array(z, np.uint8)}]
                for name, (s, z) in fixed.items()
            }
        quantize_static(
            str(pre),
            str(int8_path),
            ArrayReader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=METHODS[method],
            nodes_to_exclude=float_only_nodes(pre_model) + list(keep_float or ()),
            extra_options=extra,
        )
    int8 = onnx.load(str(int8_path))
    if has_embedding(fp32):
        int8 = add_embedding(int8)
    del int8.metadata_props[:]
    for p in fp32.metadata_props:
        if p.key == THRESHOLD_KEY:
            continue
        entry = int8.metadata_props.add()
        entry.key, entry.value = p.key, p.value
    int8.producer_name = "model_build"
    onnx.checker.check_model(int8)
    onnx.save(int8, str(int8_path))
    stamp(int8_path)
    return int8_path
