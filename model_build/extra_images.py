"""Unlabelled real photos for distillation, from Debian packages (``extra-images`` command).

Why: the quantization-aware students learned from 36 calibration images and fit them ever
better while agreeing less on other images. Distillation needs no labels (the float model is
the teacher), only more and more varied pictures, and none that overlap the check set. Two
Debian packages carry real photographs under free licences, fetched with ``apt-get download``
(the package mirror is reachable here, hub downloads are not):

* ``tuxpaint-stamps-default``: ~800 cut-out "stamps" with an alpha channel; ~300 of them are
  photos of animals, plants, food, instruments, vehicles, household objects (ImageNet's kind
  of subject). ``distill`` pastes them at random sizes and places over background crops; a
  quarter of them never: ``export-pretrained`` checks the int8 file on those, on white.
* ``mate-backgrounds``: 12 nature photographs (wallpapers), cut into background tiles.

The result is one ``.npz`` (``stamps`` RGBA and ``backgrounds`` RGB, uint8 NHWC, plus the
held-out ``check_stamps``) that travels to the GPU machine beside the distillation pack. The
activation scales, the held-out choice of students and the headline check set stay on the
sample-package images.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from model_build.serving import REPO_ROOT

PACKAGES = ("tuxpaint-stamps-default", "mate-backgrounds")
STAMP_SIZE = 192  # canvas side: stamps are pasted at 35-100 % of the 224 model input
TILE_SIZE = 288  # = distill.PACK_SIZE: backgrounds are cropped like the calibration sources
#: A stamp counts as a photo when its opaque pixels use at least this many colours (5 bits per
#: channel): drawings, letters and sign-language line art use a few dozen.
MIN_COLOURS = 300
MIN_OPAQUE = 0.15  # share of the stamp that is opaque (thin outlines and symbols are not)
#: Every HOLDOUT_EVERY-th photo stamp (by path) is never trained on: a second check set of real
#: object photos for ``export-pretrained``, disjoint from distillation.
HOLDOUT_EVERY = 4


def fetch(package: str, cache: Path) -> Path:
    """``apt-get download`` + ``dpkg-deb -x`` into ``cache/package`` (once); its root."""
    root = cache / package
    if root.is_dir():
        return root
    debs = cache / ".deb"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        try:
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        except subprocess.CalledProcessError:  # a fresh machine may need its package lists
            subprocess.run(["apt-get", "update", "-q"], check=True)
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        found = sorted(debs.glob(f"{package}_*.deb"))
    tmp = root.with_name(root.name + ".tmp")
    subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(tmp)], check=True)
    tmp.rename(root)
    return root


def is_photo_stamp(rgba: np.ndarray) -> bool:
    """Keep cut-out photographs, drop line art, letters and flat clip-art (see ``MIN_*``)."""
    if min(rgba.shape[:2]) < 64:
        return False
    opaque = rgba[..., 3] > 128
    if opaque.mean() < MIN_OPAQUE:
        return False
    px = rgba[opaque][:, :3].astype(np.int32) >> 3
    return len(np.unique((px[:, 0] << 10) | (px[:, 1] << 5) | px[:, 2])) >= MIN_COLOURS


def stamp_canvas(image: Image.Image, size: int = STAMP_SIZE) -> np.ndarray:
    """The stamp fitted (aspect kept) and centred on a transparent ``size`` square, RGBA."""
    im = image.convert("RGBA")
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return np.asarray(canvas)


def tiles(image: Image.Image, size: int = TILE_SIZE) -> list[np.ndarray]:
    """The centre crop at ``size`` plus a 2x2 grid of ``size`` tiles at twice the scale."""
    im = image.convert("RGB")
    out = []
    for scale in (1, 2):
        side = size * scale
        w, h = im.size
        r = side / min(w, h)
        big = im.resize((max(side, round(w * r)), max(side, round(h * r))), Image.Resampling.BOX)
        left, top = (big.width - side) // 2, (big.height - side) // 2
        for y in range(scale):
            for x in range(scale):
                box = (left + x * size, top + y * size, left + (x + 1) * size, top + (y + 1) * size)
                out.append(np.asarray(big.crop(box)))
    return out


def collect(stamp_files: Iterable[Path], background_files: Iterable[Path]) -> dict[str, np.ndarray]:
    """Arrays for the ``.npz``: photo-like stamps (RGBA) for training, every ``HOLDOUT_EVERY``-th
    one kept apart for checking (with its name), and background tiles (RGB)."""
    photos: list[tuple[str, np.ndarray]] = []
    for f in stamp_files:
        with Image.open(f) as im:
            rgba = np.asarray(im.convert("RGBA"))
        if is_photo_stamp(rgba):
            photos.append((f.stem, stamp_canvas(Image.fromarray(rgba))))
    held = [p for i, p in enumerate(photos) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    train = [p for i, p in enumerate(photos) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    backgrounds = []
    for f in background_files:
        with Image.open(f) as im:
            backgrounds += tiles(im)
    return {
        "stamps": _stack([a for _, a in train], (STAMP_SIZE, STAMP_SIZE, 4)),
        "check_stamps": _stack([a for _, a in held], (STAMP_SIZE, STAMP_SIZE, 4)),
        "check_names": np.array([n for n, _ in held], dtype=str),
        "backgrounds": _stack(backgrounds, (TILE_SIZE, TILE_SIZE, 3)),
    }


def _stack(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros((0, *shape), np.uint8)


def read_extra(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(training stamps RGBA, backgrounds RGB) written by ``run``."""
    with np.load(path) as z:
        return z["stamps"], z["backgrounds"]


def check_photos(path: Path) -> list[tuple[str, bytes]]:
    """The held-out stamps as uploads: flattened on white (a product photo), PNG bytes, named
    ``tuxpaint-stamps-default:NAME``."""
    with np.load(path) as z:
        stamps, names = z["check_stamps"], z["check_names"]
    out = []
    for name, rgba in zip(names, stamps, strict=True):
        white = Image.new("RGBA", rgba.shape[1::-1], (255, 255, 255, 255))
        white.alpha_composite(Image.fromarray(rgba))
        buf = io.BytesIO()
        white.convert("RGB").save(buf, "PNG")
        out.append((f"{PACKAGES[0]}:{name}", buf.getvalue()))
    return out


def holdout_id(path: Path) -> str:
    """Fingerprint of the held-out photos' names: a student records the one it trained beside,
    and the secondary check only runs for students that never saw those photos."""
    with np.load(path) as z:
        names = z["check_names"].tolist() if "check_names" in z else []
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16] if names else ""


def ensure(out: Path, cache: Path) -> Path:
    """``out``, written first if missing (fetching the packages)."""
    if not out.exists():
        run(argparse.Namespace(out=out, cache=cache))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``extra-images``."""
    p.add_argument("--out", type=Path, default=REPO_ROOT / ".mb-carry/distill/extra.npz")
    p.add_argument(
        "--cache", type=Path, default=REPO_ROOT / "data/debian", help="downloaded packages"
    )


def run(args: argparse.Namespace) -> int:
    """Fetch the packages, select and cut the images, write the ``.npz``."""
    stamps_root = fetch(PACKAGES[0], args.cache) / "usr/share/tuxpaint/stamps"
    nature = fetch(PACKAGES[1], args.cache) / "usr/share/backgrounds/mate/nature"
    arrays = collect(sorted(stamps_root.rglob("*.png")), sorted(nature.glob("*.jpg")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    size = args.out.stat().st_size / 2**20
    print(
        f"wrote {args.out}: {len(arrays['stamps'])} photo stamps to train on, "
        f"{len(arrays['check_stamps'])} held out, {len(arrays['backgrounds'])} background tiles, "
        f"{size:.1f} MiB"
    )
    return 0
