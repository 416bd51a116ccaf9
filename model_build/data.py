"""Datasets: any ImageFolder tree, and IDX files (Fashion-MNIST from Debian's package).

Every image is turned into model input by the functions' own ``fit_to_model`` (after the same
RGB conversion the serving decoder does), once, up front. Training then augments these uint8
arrays in batches on the device (see ``augment.py``), so what the network learns from is exactly
what it will be served, and data loading never limits a GPU.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model_build.serving import MAX_PIXELS, REPO_ROOT

FASHION_MNIST_DIR = REPO_ROOT / "data/usr/share/datasets/fashion-mnist"
FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --- IDX ------------------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0,0,dtype,ndim then big-endian dims."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 0
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=4 + 4 * ndim)
    return data.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as IDX (gzipped if the name ends in .gz); used by tests and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def _idx_path(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def is_idx_dir(root: Path) -> bool:
    """True if ``root`` holds the four IDX files (train/t10k images and labels)."""
    return all(_idx_path(root, stem) for stem in IDX_FILES.values())


# --- dataset model --------------------------------------------------------------------------
@dataclass
class Split:
    """One split in its source form: raw arrays (IDX) or files (ImageFolder), plus labels."""

    labels: np.ndarray
    arrays: np.ndarray | None = None  # uint8 [N,H,W] grey or [N,H,W,3]
    files: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> Split:
        """Rows ``idx`` of this split."""
        return Split(
            labels=self.labels[idx],
            arrays=None if self.arrays is None else self.arrays[idx],
            files=None if self.files is None else [self.files[i] for i in idx],
        )


@dataclass
class Dataset:
    """Class names and the splits a source provides (val/test may be missing)."""

    classes: tuple[str, ...]
    train: Split
    val: Split | None
    test: Split | None
    kind: str  # "idx" | "folder"
    root: Path


def load_idx_dataset(root: Path, classes: Sequence[str] | None = None) -> Dataset:
    """IDX train/t10k files. Class names: ``labels.txt`` in root, else Fashion-MNIST's."""
    paths = {key: _idx_path(root, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{root} lacks {missing} (run `make fashion-data`?)")

    def split(prefix: str) -> Split:
        images = read_idx(paths[f"{prefix}_images"])  # type: ignore[arg-type]
        labels = read_idx(paths[f"{prefix}_labels"]).astype(np.int64)  # type: ignore[arg-type]
        if images.ndim not in (3, 4) or len(images) != len(labels):
            raise ValueError(f"{prefix}: {images.shape} images for {labels.shape} labels")
        return Split(labels=labels, arrays=images)

    train, test = split("train"), split("test")
    if classes is None:
        names_file = root / "labels.txt"
        if names_file.is_file():
            classes = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
        else:
            classes = FASHION_MNIST_LABELS
    n = int(max(train.labels.max(), test.labels.max())) + 1
    if len(classes) < n:
        raise ValueError(f"{len(classes)} class names for {n} classes")
    return Dataset(tuple(classes[:n]), train, None, test, "idx", root)


def _folder_split(root: Path, classes: Sequence[str]) -> Split:
    files, labels = [], []
    for i, name in enumerate(classes):
        d = root / name
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(i)
    return Split(labels=np.asarray(labels, dtype=np.int64), files=files)


def load_image_folder(root: Path) -> Dataset:
    """``root/train/<class>/*`` (+ optional ``root/val``, ``root/test`` with the same classes)."""
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{root} has no train/ folder (expected train/<class>/*)")
    classes = tuple(sorted(d.name for d in train_dir.iterdir() if d.is_dir()))
    if len(classes) < 2:
        raise ValueError(f"{train_dir} needs at least two class folders")
    splits = {}
    for name in ("train", "val", "test"):
        if (root / name).is_dir():
            splits[name] = _folder_split(root / name, classes)
            if name == "train" and len(splits[name]) == 0:
                raise ValueError(f"no images under {train_dir}")
    return Dataset(classes, splits["train"], splits.get("val"), splits.get("test"), "folder", root)


def open_dataset(spec: str | Path) -> Dataset:
    """``fashion-mnist`` (the Debian package's files), an IDX folder, or an ImageFolder tree."""
    root = FASHION_MNIST_DIR if str(spec) == "fashion-mnist" else Path(spec)
    if is_idx_dir(root):
        return load_idx_dataset(root)
    if (root / "train").is_dir():
        return load_image_folder(root)
    raise FileNotFoundError(
        f"{root}: neither IDX files nor an ImageFolder tree (run `make fashion-data`?)"
    )


def carve_validation(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train_idx, val_idx) split of the training data, deterministic in ``seed``.

    Why stratified and seeded: early stopping and checkpoint choice must see every class, and
    a resumed or distributed run must carve exactly the same split.
    """
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = round(len(idx) * fraction)
        if fraction > 0 and len(idx) > 1:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def limit_per_class(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of at most ``n`` examples per class (for smoke runs on a subset)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.append(rng.permutation(idx)[:n])
    return np.sort(np.concatenate(out))


# --- model input ----------------------------------------------------------------------------
def _serving_fit() -> Callable[[Image.Image, tuple[int, int], str], np.ndarray]:
    from media_classifier.media.images import fit_to_model

    return fit_to_model


def _serving_decode() -> Callable[..., Image.Image]:
    from media_classifier.media.images import decode_image

    return decode_image


def fit_array(image: np.ndarray, size: tuple[int, int], policy: str) -> np.ndarray:
    """One raw IDX image -> uint8 HxWx3 model input, as serving would make it from a PNG.

    A grey PNG decodes to mode L and the serving decoder converts it to RGB before resizing;
    doing the same here keeps training inputs bit-identical to served ones (tested).
    """
    img = Image.fromarray(image)
    return _serving_fit()(img.convert("RGB"), size, policy)


def prepare_split(split: Split, size: tuple[int, int], policy: str, workers: int = 8) -> np.ndarray:
    """A whole split as uint8 [N,H,W,3] model inputs (threads: PIL releases the GIL)."""
    fit = _serving_fit()
    if split.arrays is not None:
        arrays = split.arrays

        def one(i: int) -> np.ndarray:
            return fit(Image.fromarray(arrays[i]).convert("RGB"), size, policy)

    else:
        decode = _serving_decode()
        files = split.files or []

        def one(i: int) -> np.ndarray:
            img = decode(files[i].read_bytes(), max_pixels=MAX_PIXELS, target=size, policy=policy)
            return fit(img, size, policy)

    out = np.empty((len(split), size[0], size[1], 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, arr in enumerate(pool.map(one, range(len(split)), chunksize=256)):
            out[i] = arr
    return out
