"""Fixtures for model_build tests: tiny generated datasets (CI has no data and no GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_build.data import IDX_FILES, write_idx

N_CLASSES = 10


def class_images(n_per_class: int, seed: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Grey images whose class is visible (a bright bar at a class-specific row) plus noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(N_CLASSES):
        for _ in range(n_per_class):
            img = rng.integers(0, 60, (size, size), dtype=np.uint8)
            row = 2 + c * (size - 4) // N_CLASSES
            img[row : row + 2, 3:-3] = 230
            images.append(img)
            labels.append(c)
    return np.stack(images), np.asarray(labels, dtype=np.uint8)


def make_idx_dir(root: Path, train_per_class: int, test_per_class: int, gz: bool = True) -> Path:
    """The four Fashion-MNIST-named IDX files, generated."""
    root.mkdir(parents=True, exist_ok=True)
    xtr, ytr = class_images(train_per_class, seed=1)
    xte, yte = class_images(test_per_class, seed=2)
    suffix = ".gz" if gz else ""
    write_idx(root / (IDX_FILES["train_images"] + suffix), xtr)
    write_idx(root / (IDX_FILES["train_labels"] + suffix), ytr)
    write_idx(root / (IDX_FILES["test_images"] + suffix), xte)
    write_idx(root / (IDX_FILES["test_labels"] + suffix), yte)
    return root


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    return make_idx_dir(tmp_path / "idx", train_per_class=6, test_per_class=2)


@pytest.fixture
def folder_dir(tmp_path: Path) -> Path:
    """ImageFolder tree: train/ and test/ with two classes, mixed formats and modes."""
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for cls, colour in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = np.clip(rng.normal(0, 20, (40 + 7 * i, 50, 3)) + colour, 0, 255)
                img = Image.fromarray(arr.astype(np.uint8))
                if i % 2:
                    img.save(d / f"{i}.jpg", quality=90)
                else:
                    img.convert("RGBA").save(d / f"{i}.png")
            (d / "notes.txt").write_text("not an image")
    return root
