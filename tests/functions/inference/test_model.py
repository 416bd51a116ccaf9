"""The model contract, the registry and top-k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from media_classifier.inference import model as model_module
from media_classifier.inference.model import (
    DENSE_INPUT_BITS_KEY,
    U8S8_PAIRS_KEY,
    U8S8_PAIRS_VALUE,
    Model,
    ModelContractError,
    ModelRegistry,
    best_labels,
    model_key,
    needs_exact_int8,
)
from tests.model_factory import COLOUR_LABELS, colour_model


def test_load_reads_the_contract(colour_model_path: Path) -> None:
    model = Model.load(colour_model_path, threads=1)
    assert model.labels == COLOUR_LABELS
    assert model.input_size == (32, 32)
    assert model.resize_policy == "squash"
    assert (model.name, model.version, model.task) == ("colour-test", "1", "classification")


def test_predict_returns_probabilities(colour_model_path: Path) -> None:
    model = Model.load(colour_model_path, threads=1)
    batch = np.zeros((2, 32, 32, 3), np.uint8)
    batch[0, ..., 0] = 255
    batch[1, ..., 2] = 255
    probs = model.predict(batch)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert probs.argmax(axis=1).tolist() == [0, 2]


def test_frames_get_a_second_session_that_does_not_spin(colour_model_path: Path) -> None:
    """Same file, same answers; its idle threads sleep (ffmpeg decodes beside it). One per
    model, made once; the model it returns is its own frames model."""
    model = Model.load(colour_model_path, threads=2)
    frames = model.for_frames()
    assert frames is model.for_frames() and frames.for_frames() is frames
    assert frames.session is not model.session
    assert (frames.sha, frames.labels, frames.threads) == (model.sha, model.labels, 2)
    spin = "session.intra_op.allow_spinning"
    assert frames.session.get_session_options().get_session_config_entry(spin) == "0"
    with pytest.raises(RuntimeError):  # never set: ONNX Runtime's default, spinning
        model.session.get_session_options().get_session_config_entry(spin)
    batch = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), np.uint8)
    np.testing.assert_array_equal(frames.predict(batch), model.predict(batch))


@pytest.mark.parametrize(
    ("saturates", "bits", "pairs", "exact"),
    [
        (True, None, None, True),
        (True, "7", None, False),
        (True, "8", None, True),
        (True, None, U8S8_PAIRS_VALUE, False),
        (True, None, "unchecked", True),
        (False, None, None, False),
    ],
)
def test_the_exact_int8_path_is_asked_for_only_where_the_file_needs_it(
    monkeypatch: pytest.MonkeyPatch,
    saturates: bool,
    bits: str | None,
    pairs: str | None,
    exact: bool,
) -> None:
    monkeypatch.setattr(model_module, "u8s8_saturates", lambda: saturates)
    meta = {} if bits is None else {DENSE_INPUT_BITS_KEY: bits}
    if pairs is not None:
        meta[U8S8_PAIRS_KEY] = pairs
    assert needs_exact_int8(meta) is exact


@pytest.mark.parametrize("bits", [None, "7"])
def test_a_cpu_whose_u8s8_saturates_gets_the_exact_path_for_8_bit_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bits: str | None
) -> None:
    """The choice is read from the file before its session is made, and its frames session
    makes the same one."""
    monkeypatch.setattr(model_module, "u8s8_saturates", lambda: True)
    metadata = {} if bits is None else {DENSE_INPUT_BITS_KEY: bits}
    model = Model.load(colour_model(tmp_path / "m.onnx", metadata=metadata), threads=1)
    key = "session.x64quantprecision"
    for session in (model.session, model.for_frames().session):
        options = session.get_session_options()
        if bits is None:
            assert options.get_session_config_entry(key) == "1"
        else:
            with pytest.raises(RuntimeError):  # never set
                options.get_session_config_entry(key)
    assert model.exact_int8 is (bits is None) and model.for_frames().exact_int8 is model.exact_int8


def test_a_file_changed_on_disk_gets_no_second_session(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    colour_model(path)
    model = Model.load(path, threads=1)
    colour_model(path, scale=0.5)  # other weights: another content hash
    with pytest.raises(ModelContractError, match="changed on disk"):
        model.for_frames()


@pytest.mark.parametrize("missing", ["labels", "resize", "name", "version", "task"])
def test_missing_metadata_is_refused(tmp_path: Path, missing: str) -> None:
    path = colour_model(tmp_path / "m.onnx", metadata={missing: None})
    with pytest.raises(ModelContractError, match=missing):
        Model.load(path)


def test_float_input_is_refused(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "m.onnx", input_type=TensorProto.FLOAT)
    with pytest.raises(ModelContractError, match="uint8"):
        Model.load(path)


def test_unknown_resize_policy_is_refused(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "m.onnx", resize="stretch")
    with pytest.raises(ModelContractError, match="resize"):
        Model.load(path)


def test_label_count_must_match_outputs(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "m.onnx", metadata={"labels": '["a", "b"]'})
    with pytest.raises(ModelContractError, match="labels"):
        Model.load(path)


def test_top_k_orders_and_clips() -> None:
    probs = np.array([0.1, 0.6, 0.3], np.float32)
    assert [x["label"] for x in best_labels(probs, ["a", "b", "c"], 2)] == ["b", "c"]
    assert len(best_labels(probs, ["a", "b", "c"], 10)) == 3
    assert best_labels(probs, ["a", "b", "c"], 1)[0] == {"label": "b", "score": pytest.approx(0.6)}


def test_registry_is_lazy_and_keyed_by_file_name(tmp_path: Path) -> None:
    colour_model(tmp_path / "colours.int8.onnx")
    colour_model(tmp_path / "other.onnx", name="other")
    registry = ModelRegistry(tmp_path)
    assert registry.keys() == ["colours", "other"]
    assert registry._loaded == {}
    first = registry.get("colours")
    assert registry.get("colours") is first
    assert list(registry._loaded) == ["colours"]
    with pytest.raises(KeyError):
        registry.get("missing")


def test_model_key() -> None:
    assert model_key(Path("a/fashion_mnist.int8.onnx")) == "fashion_mnist"
