"""Static int8 quantization (QDQ, per-channel weights) calibrated on real images.

Only the network's own layers are quantized: the uint8->float cast, the normalization and the
final softmax stay in float, so the file keeps the contract (probabilities sum to 1) and the
first layer sees exactly the normalized input it was trained on.
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

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


class ArrayReader(CalibrationDataReader):
    """Feeds calibration images (uint8 NHWC) to the calibrator in small batches."""

    def __init__(self, images: np.ndarray, batch: int = 16) -> None:
        self._images = images
        self._batch = batch
        self._it: Iterator[dict[str, np.ndarray]] = self._gen()

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self._images), self._batch):
            yield {INPUT_NAME: np.ascontiguousarray(self._images[i : i + self._batch])}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._gen()


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
) -> Path:
    """Write the int8 QDQ twin of ``fp32_path`` (metadata_props are carried over)."""
    fp32 = onnx.load(str(fp32_path))
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference + graph optimisation first, as ONNX Runtime recommends for QDQ.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        pre_model = onnx.load(str(pre))
        extra: dict = {
            "ActivationSymmetric": False,
            "WeightSymmetric": True,
            # Logits stay float: 256 levels over the logit range flip near-ties between classes.
            "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"],
        }
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        quantize_static(
            str(pre),
            str(int8_path),
            ArrayReader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=METHODS[method],
            nodes_to_exclude=float_only_nodes(pre_model),
            extra_options=extra,
        )
    int8 = onnx.load(str(int8_path))
    del int8.metadata_props[:]
    for p in fp32.metadata_props:
        entry = int8.metadata_props.add()
        entry.key, entry.value = p.key, p.value
    int8.producer_name = "model_build"
    onnx.checker.check_model(int8)
    onnx.save(int8, str(int8_path))
    return int8_path
