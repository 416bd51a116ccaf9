"""The benchmark's inputs, generated once from the repository's sample photos and cached.

* ``photo_12mp.jpg``: ``samples/images/coffee.jpg`` cropped to 4:3, upscaled to 4000x3000 and
  given a fixed film-grain-like noise before encoding at quality 90. Without the grain an
  upscaled photo is unrealistically smooth and compresses to a fraction of a real 12 MP
  phone photo; JPEG entropy decoding scales with the compressed size, so a too-small file
  would flatter every decoder. With it the file lands at a phone-like ~3-4 MB.
* ``photo_12mp_smooth.jpg``: the same photo upscaled without grain (quality 90): what a
  plain upscale gives (~1 MB), reported beside the phone-like file to show how much the
  compressed size, not the pixel count, sets the decode time.
* ``photo_12mp_progressive.jpg``: the phone-like photo re-encoded as a progressive JPEG
  (quality 90), what web tools and mozjpeg write: libjpeg must read every scan into a
  whole-image coefficient buffer, which ``jpeg_progressive`` avoids at 1/8 scale.
* ``photo_12mp_grid.heic``: the phone-like photo laid out as an iPhone stores it: HEIC
  (HEVC) at pillow-heif quality 50 (~2.4 MB, in the 1.5-3 MB of a 12 MP iPhone photo), a
  grid of 512x512 tiles (libheif decodes them on every allocated CPU) and a 320x240
  thumbnail (what Apple's ImageIO writes; the functions classify the primary image,
  ``bench/heic_thumbnails.py`` says why). Encoded in the functions' interpreter, the one
  with pillow-heif.
* ``photo_03mp.png``: ``samples/images/flower.jpg`` at 640x480 as PNG (a screenshot-sized upload).
* ``video_60s_720p.mp4``: 60 s of ffmpeg's ``testsrc2`` at 1280x720, 30 fps, H.264 (libx264,
  yuv420p), made with the ``imageio-ffmpeg`` bundled binary the functions use.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.paths import INPUTS, REPO, SAMPLES

JPEG_SIZE = (4000, 3000)
PNG_SIZE = (640, 480)
GRAIN_SIGMA = 6.0


@dataclass(frozen=True)
class Inputs:
    """Paths of the generated inputs."""

    jpeg_12mp: Path
    jpeg_12mp_smooth: Path
    jpeg_12mp_progressive: Path
    heic_12mp: Path
    png_03mp: Path
    video: Path
    video_seconds: float


def _crop_to(img, aspect: float):
    """Centre crop a PIL image to width/height ``aspect``."""
    w, h = img.size
    if w / h > aspect:
        new_w = round(h * aspect)
        left = (w - new_w) // 2
        return img.crop((left, 0, left + new_w, h))
    new_h = round(w / aspect)
    top = (h - new_h) // 2
    return img.crop((0, top, w, top + new_h))


def make_jpeg(path: Path, size: tuple[int, int] = JPEG_SIZE, grain: float = GRAIN_SIGMA) -> Path:
    """A phone-sized JPEG photo (see the module docstring for why it has grain)."""
    import numpy as np
    from PIL import Image

    src = Image.open(SAMPLES / "coffee.jpg").convert("RGB")
    big = _crop_to(src, size[0] / size[1]).resize(size, Image.Resampling.BICUBIC)
    rng = np.random.default_rng(7)
    arr = np.asarray(big, dtype=np.float32)
    if grain:
        arr += rng.normal(0.0, grain, size=(*arr.shape[:2], 1)).astype(np.float32)
        arr += rng.normal(0.0, grain / 2, size=arr.shape).astype(np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    tmp = path.with_suffix(".tmp")
    out.save(tmp, format="JPEG", quality=90)
    tmp.replace(path)
    return path


def make_progressive(path: Path, source: Path) -> Path:
    """``source`` re-encoded as a progressive JPEG at quality 90."""
    from PIL import Image

    tmp = path.with_suffix(".tmp")
    Image.open(source).save(tmp, format="JPEG", quality=90, progressive=True)
    tmp.replace(path)
    return path


def make_heic(path: Path, source: Path, python: Path, thumbnail: int) -> Path:
    """``source`` re-encoded as an iPhone-like HEIC (grid of 512x512 tiles, one thumbnail
    whose longer side is ``thumbnail``) by ``python`` (an interpreter with pillow-heif)."""
    tmp = path.with_suffix(".tmp")
    code = (
        "import sys, pillow_heif; from PIL import Image; "
        "pillow_heif.from_pillow(Image.open(sys.argv[1])).save(sys.argv[2], quality=50, "
        "tile_size=512, thumbnails=[int(sys.argv[3])])"
    )
    subprocess.run([str(python), "-c", code, str(source), str(tmp), str(thumbnail)], check=True)
    tmp.replace(path)
    return path


def make_png(path: Path, size: tuple[int, int] = PNG_SIZE) -> Path:
    """A 0.3 MP PNG from a real photo."""
    from PIL import Image

    src = Image.open(SAMPLES / "flower.jpg").convert("RGB")
    out = _crop_to(src, size[0] / size[1]).resize(size, Image.Resampling.BICUBIC)
    tmp = path.with_suffix(".tmp")
    out.save(tmp, format="PNG")
    tmp.replace(path)
    return path


def make_video(path: Path, seconds: float, size: str = "1280x720", rate: int = 30) -> Path:
    """An H.264 clip of ``testsrc2`` encoded by the bundled ffmpeg."""
    import imageio_ffmpeg

    tmp = path.with_name(path.stem + ".part.mp4")
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}",
        "-t",
        f"{seconds:g}",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(tmp),
    ]
    subprocess.run(cmd, check=True)
    tmp.replace(path)
    return path


def ensure_inputs(
    python: Path, video_seconds: float = 60.0, directory: Path = INPUTS, *, here: bool = False
) -> Inputs:
    """Create whatever input is missing and return all of their paths.

    Missing inputs are made in a child process unless ``here``: decoding and encoding a
    12 MP photo grows a process by ~100 MiB, and Linux hands a process's peak RSS on to
    the children it forks, so every later worker would report at least that peak.
    """
    directory.mkdir(parents=True, exist_ok=True)
    jpeg = directory / "photo_12mp.jpg"
    smooth = directory / "photo_12mp_smooth.jpg"
    progressive = directory / "photo_12mp_progressive.jpg"
    heic = directory / "photo_12mp_grid.heic"
    png = directory / "photo_03mp.png"
    video = directory / f"video_{video_seconds:g}s_720p.mp4"
    inputs = Inputs(jpeg, smooth, progressive, heic, png, video, video_seconds)
    missing = [p for p in (jpeg, smooth, progressive, heic, png, video) if not p.is_file()]
    if missing and not here:
        args = [sys.executable, "-m", "bench.inputs", str(python), f"{video_seconds:g}"]
        subprocess.run([*args, str(directory)], check=True, cwd=REPO)
        return inputs
    if not jpeg.is_file():
        make_jpeg(jpeg)
    if not smooth.is_file():
        make_jpeg(smooth, grain=0.0)
    if not progressive.is_file():
        make_progressive(progressive, jpeg)
    if not heic.is_file():
        make_heic(heic, jpeg, python, 320)
    if not png.is_file():
        make_png(png)
    if not video.is_file():
        make_video(video, video_seconds)
    return inputs


if __name__ == "__main__":  # the child of ensure_inputs
    ensure_inputs(Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3]), here=True)
