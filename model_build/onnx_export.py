"""Export a classifier to the project's ONNX contract and check it against PyTorch."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from model_build.contract import INPUT_NAME, OUTPUT_NAME, ModelMeta
from model_build.embedding import EMBEDDING_KEY, EMBEDDING_NORM, add_embedding, has_embedding
from model_build.stamp import stamp
from model_build.wrapper import ServingModel

OPSET = 17


def export_onnx(
    net: nn.Module,
    meta: ModelMeta,
    mean: Sequence[float],
    std: Sequence[float],
    path: Path,
) -> Path:
    """Write ``net`` wrapped in the contract (uint8 NHWC in, probabilities out, plus the
    ``embedding`` output: ``model_build.embedding``) to ``path``."""
    wrapped = ServingModel(net, mean, std, size=meta.input_size)
    return export_serving(wrapped, meta, path)


def export_serving(wrapped: nn.Module, meta: ModelMeta, path: Path) -> Path:
    """Write an already wrapped model (``ServingModel``) with the contract's metadata.

    The TorchScript-based exporter is used (``dynamo=False``): it needs no extra packages
    (onnxscript) and gives a plain graph that ONNX Runtime's quantizer handles well; its tensor
    names follow module paths, which ``qsim`` relies on. The ``embedding`` output (the pooled
    features, L2-normalized) is added to the exported graph by ``model_build.embedding``, the
    same edit ``add-embedding`` makes to an existing file.
    """
    wrapped = wrapped.eval().cpu()
    h, w = meta.input_size
    dummy = torch.zeros(2, h, w, 3, dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices are not actionable
        torch.onnx.export(
            wrapped,
            (dummy,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    onnx.save(add_embedding(onnx.load(str(path))), str(path))
    set_metadata(path, meta)
    return path


def set_metadata(path: Path, meta: ModelMeta) -> None:
    """Store the contract's ``metadata_props`` (replacing any existing ones) and validate.

    A graph with the ``embedding`` output also gets ``embedding = "l2"`` (its
    ``duplicate_threshold`` is measured later, on the file that ships: ``retrieval``). Last, the
    file's content hash goes in as ``sha`` (``model_build.stamp``): its identity.
    """
    model = onnx.load(str(path))
    del model.metadata_props[:]
    props = meta.props()
    if has_embedding(model):
        props[EMBEDDING_KEY] = EMBEDDING_NORM
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "model_build"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    stamp(path)


def read_metadata(path: Path) -> ModelMeta:
    """Read the contract back from a file (validates the input signature too)."""
    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    if inp.type.tensor_type.elem_type != onnx.TensorProto.UINT8 or len(dims) != 4:
        raise ValueError("input must be uint8 [N,H,W,3]")
    if dims[3].dim_value != 3:
        raise ValueError("input must have 3 channels last")
    return ModelMeta.from_props(props, (dims[1].dim_value, dims[2].dim_value))


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """A CPU ONNX Runtime session with the serving code's options (threads=0: all allocated).

    Why the serving options: build-time checks must run the int8 kernels serving runs, which
    depend on the CPU (``media_classifier.inference.model.u8s8_saturates``).
    """
    from media_classifier.inference.model import session_options

    return ort.InferenceSession(
        str(path), session_options(threads or None), providers=["CPUExecutionProvider"]
    )


def run_onnx(sess: ort.InferenceSession, batch: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Probabilities for a uint8 NHWC batch, run in chunks to bound memory."""
    outs = [
        sess.run([OUTPUT_NAME], {INPUT_NAME: batch[i : i + chunk]})[0]
        for i in range(0, len(batch), chunk)
    ]
    return np.concatenate(outs, axis=0)


@torch.no_grad()
def run_torch(
    net: nn.Module, mean: Sequence[float], std: Sequence[float], batch: np.ndarray, chunk: int = 64
) -> np.ndarray:
    """The PyTorch reference for the same uint8 batch (fp32, CPU)."""
    wrapped = ServingModel(net, mean, std).eval().cpu()
    outs = [
        wrapped(torch.from_numpy(np.ascontiguousarray(batch[i : i + chunk]))).numpy()
        for i in range(0, len(batch), chunk)
    ]
    return np.concatenate(outs, axis=0)
