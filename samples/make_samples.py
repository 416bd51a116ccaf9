"""Rebuild the demo samples made from Debian packages: the fire engine photo and the ladybug clip.

Why these: the default model names the 1000 ImageNet classes, so a first demo should show it
subjects it knows (`fire engine`, `ladybug`), not subjects it can only approximate. Both
sources are real photographs under free licences inside Debian packages (see LICENSE.md in
samples/images and samples/video), fetched with ``apt-get download``: no other network.

The output is deterministic for the pinned packages and the ffmpeg that ships in
``imageio-ffmpeg`` (one encoder thread, no timestamps or metadata): running this again writes
the same bytes, whose SHA-256 the licence files list.

    .venv/bin/python samples/make_samples.py            # writes both files in place
    .venv/bin/python samples/make_samples.py --check    # exit 1 if the shipped files differ
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio_ffmpeg
from PIL import Image

SAMPLES = Path(__file__).resolve().parent
#: Debian packages (bookworm) and the files taken from them.
STAMPS = ("tuxpaint-stamps-default", "2022.06.04-1")
BACKGROUNDS = ("mate-backgrounds", "1.26.0-1")
FIRE_ENGINE_SRC = "usr/share/tuxpaint/stamps/vehicles/emergency/firetruck.png"
LADYBUG_SRC = "usr/share/backgrounds/mate/nature/LadyBird.jpg"
FIRE_ENGINE = SAMPLES / "images" / "fire-engine.jpg"
LADYBUG = SAMPLES / "video" / "ladybug-zoom.mp4"

#: The clip: 4 s at 25 fps, 640x360, zooming from the whole photo onto the ladybug.
FPS = 25
SECONDS = 4
SIZE = (640, 360)
#: Where the ladybug sits in the 2560x1600 photo, and the last frame's width around it.
LADYBUG_CENTRE = (1805, 815)
END_WIDTH = 960


def fetch(package: str, version: str, workdir: Path) -> Path:
    """``apt-get download package=version`` and unpack it; the unpacked root."""
    subprocess.run(
        ["apt-get", "download", f"{package}={version}"], cwd=workdir, check=True, text=True
    )
    (deb,) = workdir.glob(f"{package}_*.deb")
    root = workdir / package
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def fire_engine(stamp: Path) -> bytes:
    """The cut-out photo flattened on white, as a JPEG (quality 90)."""
    rgba = Image.open(stamp).convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    buf = io.BytesIO()
    flat.save(buf, format="JPEG", quality=90, optimize=True)
    return buf.getvalue()


def zoom_boxes(image_size: tuple[int, int]) -> list[tuple[float, float, float, float]]:
    """Crop boxes (16:9) from the widest one the photo holds to ``END_WIDTH`` on the ladybug.

    The width shrinks geometrically (a steady zoom to the eye) and the centre moves linearly
    from the widest box's centre to the ladybug; every box stays inside the photo.
    """
    width, height = image_size
    aspect = SIZE[1] / SIZE[0]
    w0 = min(width, height / aspect)
    cx0, cy0 = width / 2, height / 2
    cx1, cy1 = LADYBUG_CENTRE
    frames = FPS * SECONDS
    boxes = []
    for i in range(frames):
        t = i / (frames - 1)
        w = w0 * (END_WIDTH / w0) ** t
        h = w * aspect
        cx = min(max(cx0 + (cx1 - cx0) * t, w / 2), width - w / 2)
        cy = min(max(cy0 + (cy1 - cy0) * t, h / 2), height - h / 2)
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return boxes


def ladybug_clip(photo: Path, out: Path) -> None:
    """Render the frames with Pillow and encode them with the bundled ffmpeg (H.264)."""
    image = Image.open(photo).convert("RGB")
    frames = b"".join(
        image.resize(SIZE, Image.Resampling.LANCZOS, box=box).tobytes()
        for box in zoom_boxes(image.size)
    )
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{SIZE[0]}x{SIZE[1]}",
        "-r",
        str(FPS),
        "-i",
        "-",
        "-c:v",
        "libx264",
        "-preset",
        "slow",
        "-crf",
        "26",
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-movflags",
        "+faststart",
        str(out),
    ]
    subprocess.run(cmd, input=frames, check=True)


def build(outdir: Path, workdir: Path) -> dict[Path, Path]:
    """Write both samples under ``outdir``; {shipped path: written path}."""
    stamps = fetch(*STAMPS, workdir)
    backgrounds = fetch(*BACKGROUNDS, workdir)
    written = {}
    engine = outdir / FIRE_ENGINE.name
    engine.write_bytes(fire_engine(stamps / FIRE_ENGINE_SRC))
    written[FIRE_ENGINE] = engine
    clip = outdir / LADYBUG.name
    ladybug_clip(backgrounds / LADYBUG_SRC, clip)
    written[LADYBUG] = clip
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        written = build(work / "out", work)
        differ = 0
        for shipped, new in written.items():
            data = new.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if args.check:
                same = shipped.is_file() and shipped.read_bytes() == data
                differ += not same
                print(f"{'same' if same else 'DIFFERS'}  {digest}  {shipped.name}")
            else:
                shipped.write_bytes(data)
                print(f"{digest}  {shipped.relative_to(SAMPLES.parent)} ({len(data)} bytes)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
