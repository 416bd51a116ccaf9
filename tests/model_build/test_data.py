"""Data loading: IDX files, ImageFolder trees, splits, and the preprocessing contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_build import data
from model_build.serving import png_bytes, prepare_image

from .conftest import make_idx_dir


@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 4), (2, 4, 4, 3)])
def test_idx_round_trip(tmp_path: Path, name: str, shape: tuple[int, ...]) -> None:
    arr = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(data.read_idx(data.write_idx(tmp_path / name, arr)), arr)


def test_idx_header_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX"):
        data.read_idx(bad)


def test_idx_dataset_gz_and_raw(tmp_path: Path) -> None:
    for gz in (True, False):
        root = make_idx_dir(tmp_path / str(gz), train_per_class=3, test_per_class=1, gz=gz)
        ds = data.open_dataset(root)
        assert ds.kind == "idx"
        assert ds.classes == data.FASHION_MNIST_LABELS
        assert ds.train.arrays is not None and ds.train.arrays.shape == (30, 28, 28)
        assert ds.test is not None and len(ds.test) == 10
        assert sorted(set(ds.train.labels.tolist())) == list(range(10))


def test_idx_labels_txt_names_classes(idx_dir: Path) -> None:
    names = [f"c{i}" for i in range(10)]
    (idx_dir / "labels.txt").write_text("\n".join(names) + "\n")
    assert data.open_dataset(idx_dir).classes == tuple(names)


def test_missing_data_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make fashion-data"):
        data.open_dataset(tmp_path)


def test_image_folder(folder_dir: Path) -> None:
    ds = data.open_dataset(folder_dir)
    assert ds.kind == "folder"
    assert ds.classes == ("cat", "dog")
    assert len(ds.train) == 8 and ds.val is None and ds.test is not None and len(ds.test) == 4
    assert all(f.suffix in {".jpg", ".png"} for f in ds.train.files or [])
    x = data.prepare_split(ds.train, (32, 48), "squash", workers=2)
    assert x.shape == (8, 32, 48, 3) and x.dtype == np.uint8
    # Class colour survives decoding (RGBA PNGs are composited, JPEGs decoded).
    red = x[ds.train.labels == 0][..., 0].mean()
    blue = x[ds.train.labels == 0][..., 2].mean()
    assert red > blue + 100


def test_carve_validation_is_stratified_disjoint_and_deterministic() -> None:
    labels = np.repeat(np.arange(5), 20)
    tr, va = data.carve_validation(labels, 0.1, seed=3)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == len(labels)
    assert np.bincount(labels[va]).tolist() == [2] * 5
    tr2, va2 = data.carve_validation(labels, 0.1, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, data.carve_validation(labels, 0.1, seed=4)[1])


def test_limit_per_class() -> None:
    labels = np.repeat(np.arange(3), 10)
    idx = data.limit_per_class(labels, 4, seed=0)
    assert np.bincount(labels[idx]).tolist() == [4, 4, 4]


@pytest.mark.parametrize("policy", ["squash", "center_crop"])
def test_training_inputs_are_bit_identical_to_served_inputs(idx_dir: Path, policy: str) -> None:
    """The preprocessing contract: a 28x28 grey image prepared for training equals the same
    image uploaded as PNG and run through the functions' prepare_image."""
    ds = data.open_dataset(idx_dir)
    assert ds.train.arrays is not None
    x = data.prepare_split(ds.train, (96, 96), policy, workers=2)
    for i in range(0, len(x), 7):
        served = prepare_image(png_bytes(ds.train.arrays[i]), (96, 96), policy)
        assert np.array_equal(x[i], served)


def test_compact_keeps_one_channel_for_grey_only() -> None:
    from model_build.train import compact

    grey = np.repeat(np.arange(48, dtype=np.uint8).reshape(1, 4, 4, 3)[..., :1], 3, axis=-1)
    assert compact(grey).shape == (1, 4, 4, 1)
    colour = grey.copy()
    colour[0, 0, 0, 2] = 255
    assert compact(colour).shape == (1, 4, 4, 3)
