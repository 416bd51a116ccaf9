"""The optional ``embedding`` output: read from the model, one vector per picture or segment."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from media_classifier.inference.model import Model, ModelContractError
from media_classifier.inference.pipeline import Limits, _segment_vectors, classify_bytes, unit
from tests.functions.conftest import encode
from tests.model_factory import colour_model


@pytest.fixture
def model(tmp_path: Path) -> Model:
    path = colour_model(
        tmp_path / "colour.onnx", embedding=True, metadata={"duplicate_threshold": "0.97"}
    )
    return Model.load(path, threads=1)


def test_the_embedding_output_and_its_threshold_are_read(model: Model) -> None:
    assert (model.embedding_dims, model.duplicate_threshold) == (3, 0.97)
    assert model.describe()["embeddingDims"] == 3


def test_a_model_without_the_output_has_no_vectors(colour_model_path: Path) -> None:
    plain = Model.load(colour_model_path, threads=1)
    assert (plain.embedding_dims, plain.duplicate_threshold) == (0, None)
    data = encode(Image.new("RGB", (40, 40), (200, 0, 0)), "PNG")
    assert classify_bytes(data, plain, top_k=1, limits=Limits()).embedding is None


def test_a_picture_gets_its_unit_vector(model: Model) -> None:
    data = encode(Image.new("RGB", (40, 40), (255, 0, 0)), "PNG")
    result = classify_bytes(data, model, top_k=1, limits=Limits())
    assert result.embedding is not None
    assert np.allclose(result.embedding, np.array([1, -1, -1]) / np.sqrt(3), atol=1e-3)
    assert "embedding" not in result.fields()  # never in the result document


def test_an_animation_gets_a_vector_per_segment_and_a_whole_one(model: Model) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0)] * 3 + [(0, 0, 255)] * 3]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=1000)
    result = classify_bytes(buf.getvalue(), model, top_k=1, limits=Limits())
    segments = result.video["segments"]
    assert [s["label"] for s in segments] == ["red", "blue"]
    assert len(result.segment_embeddings) == 2
    red, blue = (np.array(v) for v in result.segment_embeddings)
    assert red[0] > 0.5 > blue[0] and blue[2] > 0.5 > red[2]
    whole = np.array(result.embedding)
    assert abs(np.linalg.norm(whole) - 1) < 1e-6 and whole @ red > 0 and whole @ blue > 0


def test_segment_vectors_average_the_frames_shown_in_each_segment() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0]])
    segments = [{"startSec": 0.0, "endSec": 2.0}, {"startSec": 2.0, "endSec": 3.0}]
    first, second = _segment_vectors([0.0, 1.0, 2.0], vectors, segments)
    assert np.allclose(first, unit(np.array([2.0, 0.2])))
    assert np.allclose(second, [0.0, 1.0])


def test_an_embedding_output_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "bad.onnx", embedding=True)
    proto = onnx.load(str(path))
    proto.graph.output[1].CopyFrom(
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3, 1])
    )
    onnx.save(proto, str(path))
    with pytest.raises(ModelContractError, match="embedding"):
        Model.load(path, threads=1)
