"""Selection and cutting of the extra distillation photos (pure parts; the fetch needs apt)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from model_build import extra_images as ex


def noisy_rgba(h: int, w: int, opaque: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros((h, w, 4), np.uint8)
    a[..., :3] = rng.integers(0, 256, (h, w, 3))
    a[: int(h * opaque), :, 3] = 255
    return a


def test_photo_stamps_kept_line_art_and_slivers_dropped() -> None:
    assert ex.is_photo_stamp(noisy_rgba(80, 100))
    drawing = noisy_rgba(80, 100)
    drawing[..., :3] = np.where(drawing[..., :1] > 128, 255, 0)  # two colours
    assert not ex.is_photo_stamp(drawing)
    assert not ex.is_photo_stamp(noisy_rgba(40, 100))  # too small
    assert not ex.is_photo_stamp(noisy_rgba(80, 100, opaque=0.1))  # mostly transparent


def test_stamp_canvas_keeps_aspect_centred_on_transparency() -> None:
    canvas = ex.stamp_canvas(Image.fromarray(noisy_rgba(50, 100)), size=64)
    assert canvas.shape == (64, 64, 4)
    rows = np.flatnonzero(canvas[..., 3].max(1))
    assert (rows.min(), rows.max()) == (16, 47)  # 100x50 -> 64x32, centred
    assert canvas[:16, :, 3].max() == 0


def test_tiles_are_a_centre_crop_and_a_2x2_grid(tmp_path: Path) -> None:
    tiles = ex.tiles(Image.fromarray(noisy_rgba(90, 120)[..., :3]), size=32)
    assert len(tiles) == 5 and all(t.shape == (32, 32, 3) for t in tiles)


def test_collect_holds_out_every_fourth_photo_and_writes_what_distill_reads(
    tmp_path: Path,
) -> None:
    stamps = []
    for i in range(8):
        f = tmp_path / f"s{i}.png"
        Image.fromarray(noisy_rgba(80, 100, seed=i)).save(f)
        stamps.append(f)
    drawing, bg = tmp_path / "d.png", tmp_path / "b.jpg"
    Image.fromarray(np.zeros((80, 100, 4), np.uint8)).save(drawing)
    Image.fromarray(noisy_rgba(300, 400)[..., :3]).save(bg)
    arrays = ex.collect([*stamps, drawing], [bg])
    assert arrays["stamps"].shape == (6, ex.STAMP_SIZE, ex.STAMP_SIZE, 4)
    assert arrays["check_names"].tolist() == ["s3", "s7"]
    assert arrays["backgrounds"].shape == (5, ex.TILE_SIZE, ex.TILE_SIZE, 3)
    np.savez_compressed(tmp_path / "x.npz", **arrays)
    train, backgrounds = ex.read_extra(tmp_path / "x.npz")
    assert np.array_equal(train, arrays["stamps"]) and len(backgrounds) == 5
    held = arrays["check_stamps"]
    assert not any(np.array_equal(h, t) for h in held for t in train)  # disjoint
    photos = ex.check_photos(tmp_path / "x.npz")
    assert [n for n, _ in photos] == ["tuxpaint-stamps-default:s3", "tuxpaint-stamps-default:s7"]
    first = np.asarray(Image.open(io.BytesIO(photos[0][1])))
    assert first.shape == (ex.STAMP_SIZE, ex.STAMP_SIZE, 3)
    assert (first[0, 0] == 255).all()  # transparent margin -> white
    # the fingerprint a student records: stable, and different for a different held-out set
    assert ex.holdout_id(tmp_path / "x.npz") == ex.holdout_id(tmp_path / "x.npz") != ""
    np.savez_compressed(tmp_path / "y.npz", **{**arrays, "check_names": np.array(["s3"])})
    assert ex.holdout_id(tmp_path / "y.npz") != ex.holdout_id(tmp_path / "x.npz")
