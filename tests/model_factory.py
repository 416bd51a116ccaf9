"""Tiny ONNX models that follow the model contract, for tests of the serving code.

Why: unit tests of the registry and pipeline need a model whose answer is known in
advance. The colour model averages each channel and softmaxes a scaled identity, so a
red image is "red" with certainty, whatever the resize policy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

COLOUR_LABELS = ["red", "green", "blue"]


def colour_model(
    path: Path,
    *,
    size: tuple[int, int] = (32, 32),
    resize: str = "squash",
    name: str = "colour-test",
    version: str = "1",
    metadata: dict[str, str] | None = None,
    input_type: int = TensorProto.UINT8,
    scale: float = 0.2,
    embedding: bool = False,
) -> Path:
    """Write a contract-following colour classifier to ``path`` and return it.

    ``scale``: the weight of the one layer (another value is a "retrained" model).
    ``embedding``: add the optional ``embedding`` output, the image's mean colour centred
    on grey and L2-normalized (3 dimensions: pictures of one colour are "the same").
    """
    height, width = size
    weights = numpy_helper.from_array((np.eye(3, dtype=np.float32) * scale), "w")
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=0),
        helper.make_node("MatMul", ["mean", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    axes = numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes")
    initializers = [weights, axes]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])]
    if embedding:
        initializers.append(numpy_helper.from_array(np.float32(127.5), "grey"))
        nodes += [
            helper.make_node("Sub", ["mean", "grey"], ["centred"]),
            helper.make_node("LpNormalization", ["centred"], ["embedding"], axis=-1, p=2),
        ]
        outputs.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3]))
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info("image", input_type, ["N", height, width, 3])],
        outputs,
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = {
        "labels": json.dumps(COLOUR_LABELS),
        "resize": resize,
        "name": name,
        "version": version,
        "task": "classification",
        **(metadata or {}),
    }
    for key, value in meta.items():
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path
