"""A model file's identity is its content: hash, stamp, the check at load, the registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from media_classifier.inference import identity as model_identity
from media_classifier.inference.model import Model, ModelContractError, ModelRegistry
from media_classifier.inference.pipeline import model_ref
from model_build.stamp import check, stamp
from tests.model_factory import colour_model


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_the_hash_changes_with_the_weights_and_not_with_the_metadata(tmp_path: Path) -> None:
    base = colour_model(tmp_path / "a.onnx").read_bytes()
    renamed = colour_model(tmp_path / "b.onnx", name="other", version="9").read_bytes()
    retrained = colour_model(tmp_path / "c.onnx", scale=0.3).read_bytes()
    sha = model_identity.content_sha(base)
    assert len(sha) == 12 and int(sha, 16) >= 0
    assert model_identity.content_sha(renamed) == sha
    assert model_identity.content_sha(retrained) != sha


def test_stamping_adds_the_hash_and_changes_nothing_else(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "m.onnx")
    before = onnx.load(str(path))
    assert check(path) is None
    sha = stamp(path)
    after = onnx.load(str(path))
    assert _props(path) == {**{p.key: p.value for p in before.metadata_props}, "sha": sha}
    del before.metadata_props[:], after.metadata_props[:]
    assert after.SerializeToString() == before.SerializeToString()
    assert check(path) == sha
    data = path.read_bytes()
    assert stamp(path) == sha and path.read_bytes() == data  # idempotent


def test_a_stale_stamp_is_replaced_by_the_files_own_hash(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "m.onnx", metadata={"sha": "0123456789ab"})
    sha = stamp(path)
    assert sha != "0123456789ab" and _props(path)["sha"] == sha
    assert list(_props(path)) == ["labels", "resize", "name", "version", "task", "sha"]


def test_load_exposes_the_hash_in_the_result_model_field(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "colour.onnx")
    sha = stamp(path)
    model = Model.load(path, threads=1)
    assert model.sha == sha
    assert model_ref(model) == {"id": "colour", "name": "colour-test", "version": "1", "sha": sha}
    assert model.describe()["sha"] == sha


def test_an_unstamped_file_is_served_under_its_computed_hash(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "colour.onnx")
    assert Model.load(path, threads=1).sha == model_identity.content_sha(path.read_bytes())


def test_a_file_whose_weights_changed_after_stamping_is_refused_loudly(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "colour.onnx")
    stamp(path)
    model = onnx.load(str(path))  # edit the weights, keep the old metadata (and its sha)
    weights = model.graph.initializer[0]
    values = onnx.numpy_helper.to_array(weights) * 2
    weights.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), weights.name))
    onnx.save(model, str(path))
    with pytest.raises(ModelContractError, match="re-stamp"):
        Model.load(path, threads=1)


def test_not_an_onnx_file_is_a_contract_error(tmp_path: Path) -> None:
    with pytest.raises(model_identity.NotAModelFile):
        model_identity.content_sha(b"\x0b\xff\xff")  # wire type 3 (groups) and garbage


def test_the_registry_refuses_two_files_with_one_id(tmp_path: Path) -> None:
    colour_model(tmp_path / "colour.int8.onnx")
    shutil.copyfile(tmp_path / "colour.int8.onnx", tmp_path / "colour.fp32.onnx")
    registry = ModelRegistry(tmp_path)
    with pytest.raises(ModelContractError, match=r"colour: colour\.fp32\.onnx, colour\.int8\.onnx"):
        registry.keys()
    with pytest.raises(ModelContractError, match="two model files with one id"):
        registry.get("colour")
