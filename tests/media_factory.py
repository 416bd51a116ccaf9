"""Synthetic test media, generated on the fly with the bundled ffmpeg and Pillow.

Why generate: every property a test asserts (duration, size, frame rate,
rotation, which frame is where) is then known by construction, nothing binary
needs to be committed, and the same builders serve the hostile-input corpus.

Every builder writes to the path it is given (use pytest's ``tmp_path``) and
returns that path. Container and codec follow the file extension unless given.

Frame-counter videos encode the frame number N in the colour of the whole
frame (``N % 16`` in red, ``N // 16 % 16`` in green, steps of 16 so lossy
codecs and scaling cannot blur one number into the next);
:func:`frame_number` reads it back, so a test can tell exactly which source
frame a sampler returned.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: Default video codec per container (all encoders ship in imageio-ffmpeg's build).
CODECS = {
    ".mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    ".mov": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    ".mkv": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    ".webm": [
        "-c:v",
        "libvpx-vp9",
        "-pix_fmt",
        "yuv420p",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
    ],
    ".avi": ["-c:v", "mpeg4", "-q:v", "3"],
    ".mpg": ["-c:v", "mpeg2video", "-q:v", "3"],
    ".ts": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    ".flv": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    ".ogv": ["-c:v", "libtheora", "-q:v", "7"],
}
AUDIO_CODECS = {
    ".webm": "libopus",
    ".avi": "libmp3lame",
    ".mpg": "mp2",
    ".mkv": "aac",
    ".ogv": "libvorbis",
}


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str, timeout: float = 120) -> None:
    """Run the bundled ffmpeg; raise with its stderr if it fails."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")


def _codec(path: Path, codec: Sequence[str] | None) -> list[str]:
    return list(codec) if codec is not None else CODECS[path.suffix.lower()]


def testsrc_video(
    path: str | Path,
    *,
    duration: float = 2.0,
    size: tuple[int, int] = (320, 240),
    fps: float = 30,
    codec: Sequence[str] | None = None,
    gop: int | None = None,
    audio: bool = False,
    extra: Sequence[str] = (),
) -> Path:
    """ffmpeg's ``testsrc2`` pattern: ``size`` is (width, height) like ffmpeg's.

    ``gop`` sets the keyframe interval in frames (default: the encoder's own,
    250 for libx264); ``audio`` adds a sine tone.
    """
    path = Path(path)
    w, h = size
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={duration}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={duration}"]
    args += _codec(path, codec)
    if gop is not None:
        args += ["-g", str(gop)]
    if audio:
        args += ["-c:a", AUDIO_CODECS.get(path.suffix.lower(), "aac"), "-shortest"]
    ffmpeg(*args, *extra, str(path))
    return path


def _counter_filter(fps: float, duration: float, size: tuple[int, int]) -> str:
    w, h = size
    return (
        f"color=black:s={w}x{h}:r={fps}:d={duration},format=rgb24,"
        "geq=r='mod(N\\,16)*16+8':g='mod(floor(N/16)\\,16)*16+8':b=128"
    )


def frame_counter_video(
    path: str | Path,
    *,
    duration: float = 4.0,
    fps: float = 30,
    size: tuple[int, int] = (64, 64),
    gop: int | None = None,
    codec: Sequence[str] | None = None,
) -> Path:
    """A video whose every frame shows its own frame number (see :func:`frame_number`).

    With H.264 (.mp4/.mkv/.mov) scene-cut detection is off, so keyframes are
    exactly every ``gop`` frames (default 250, x264's) although every frame
    differs from the last: tests choose between sparse and dense keyframes.
    """
    path = Path(path)
    args = ["-f", "lavfi", "-i", _counter_filter(fps, duration, size), *_codec(path, codec)]
    if gop is not None:
        args += ["-g", str(gop)]
    if path.suffix.lower() in (".mp4", ".mkv", ".mov") and codec is None:
        args += ["-crf", "12", "-sc_threshold", "0"]
    ffmpeg(*args, str(path))
    return path


def frame_number(frame: np.ndarray) -> int:
    """The frame number a frame-counter video drew into ``frame`` (modulo 256)."""
    h, w = frame.shape[:2]
    r, g = (int(v) for v in frame[h // 2, w // 2, :2])
    return r // 16 + 16 * (g // 16)


def vfr_video(path: str | Path, *, size: tuple[int, int] = (64, 64)) -> Path:
    """A variable-frame-rate counter video: 30 fps for 1 s, a 2 s freeze, then 10 fps.

    Frame N is shown from ``N/30`` s for N < 30 and from ``3 + (N - 30)/10`` s
    after (frames 30..59): frame 29 stays on screen from 0.967 s to 3.0 s.
    """
    path = Path(path)
    src = _counter_filter(30, 2.0, size)
    timing = "setpts='if(lt(N\\,30)\\,N/30\\,3+(N-30)/10)/TB'"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"{src},{timing}",
        "-fps_mode",
        "vfr",
        *_codec(path, None),
        "-crf",
        "12",
        "-video_track_timescale",
        "90000",
        str(path),
    )
    return path


def rotated_video(
    path: str | Path,
    *,
    rotation: int = 90,
    size: tuple[int, int] = (320, 180),
    duration: float = 2.0,
) -> Path:
    """A phone-style video: landscape pixels plus a display-matrix rotation.

    ``rotation`` is clockwise, as phones record it (a portrait iPhone video
    stores landscape pixels rotated 90 degrees clockwise for display). The
    stored frame is blue with a red block in its top-left corner, so after a
    90 degree clockwise rotation the red block is in the top-right corner.
    """
    path = Path(path)
    w, h = size
    plain = path.with_name(path.stem + "-unrotated" + path.suffix)
    src = (
        f"color=blue:s={w}x{h}:r=30:d={duration},"
        f"drawbox=x=0:y=0:w={w // 4}:h={h // 3}:color=red:t=fill"
    )
    ffmpeg("-f", "lavfi", "-i", src, *_codec(path, None), str(plain))
    # -display_rotation is counter-clockwise; stream copy keeps the pixels as they are.
    ffmpeg("-display_rotation", str(-rotation), "-i", str(plain), "-c", "copy", str(path))
    plain.unlink()
    return path


def audio_only(path: str | Path, *, duration: float = 2.0, cover_art: bool = False) -> Path:
    """An audio file (codec by extension: .m4a AAC, .mp3 MP3, .wav PCM).

    ``cover_art`` embeds a PNG as an attached picture: ffmpeg lists it as a
    video stream, and it must still count as audio only.
    """
    path = Path(path)
    args = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={duration}"]
    if cover_art:
        cover = path.with_name(path.stem + "-cover.png")
        Image.new("RGB", (64, 64), (200, 30, 30)).save(cover)
        args += ["-i", str(cover), "-map", "0:a", "-map", "1:v", "-c:v", "png"]
        args += ["-disposition:v", "attached_pic"]
    ffmpeg(*args, str(path))
    if cover_art:
        cover.unlink()
    return path


def truncated_copy(src: str | Path, dst: str | Path, *, keep: float) -> Path:
    """The first ``keep`` fraction of ``src``'s bytes: an interrupted upload."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


#: Distinct, saturated colours for animation frames (easy to tell apart after resizing).
PALETTE = [(230, 25, 25), (25, 200, 25), (25, 25, 230), (230, 230, 25), (25, 230, 230)]


def animation_frames(
    count: int, size: tuple[int, int] = (64, 48), *, transparent: bool = False
) -> list[Image.Image]:
    """Frames of solid ``PALETTE`` colours, frame i in ``PALETTE[i % 5]``; size is (w, h)."""
    frames = []
    for i in range(count):
        colour = PALETTE[i % len(PALETTE)]
        if transparent:
            frame = Image.new("RGBA", size, (*colour, 255))
            frame.paste((0, 0, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
        else:
            frame = Image.new("RGB", size, colour)
        frames.append(frame)
    return frames


def animated_gif(
    path: str | Path,
    durations_ms: Sequence[int],
    *,
    size: tuple[int, int] = (64, 48),
    transparent: bool = False,
) -> Path:
    """An animated GIF with one ``PALETTE`` frame per entry of ``durations_ms``."""
    path = Path(path)
    frames = animation_frames(len(durations_ms), size, transparent=transparent)
    if transparent:
        frames = [f.convert("RGBA") for f in frames]
    frames[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=list(durations_ms),
        loop=0,
        disposal=2,
        optimize=False,
    )
    return path


def _animation(
    path: str | Path, fmt: str, durations_ms: Sequence[int], size: tuple[int, int], **options
) -> Path:
    """One ``PALETTE`` frame per entry of ``durations_ms``, saved by Pillow as ``fmt``."""
    path = Path(path)
    frames = animation_frames(len(durations_ms), size)
    frames[0].save(
        path,
        format=fmt,
        save_all=True,
        append_images=frames[1:],
        duration=list(durations_ms),
        **options,
    )
    return path


def animated_webp(
    path: str | Path, durations_ms: Sequence[int], *, size: tuple[int, int] = (64, 48)
) -> Path:
    """An animated WebP with one ``PALETTE`` frame per entry of ``durations_ms``."""
    return _animation(path, "WEBP", durations_ms, size, loop=0, lossless=True)


def animated_avif(
    path: str | Path, durations_ms: Sequence[int], *, size: tuple[int, int] = (64, 48)
) -> Path:
    """An animated AVIF (brand ``avis``), one ``PALETTE`` frame per entry of ``durations_ms``."""
    return _animation(path, "AVIF", durations_ms, size)


def dominant_palette_index(frame: np.ndarray) -> int:
    """Which ``PALETTE`` colour a frame (mostly) shows."""
    mean = frame.reshape(-1, 3).mean(axis=0)
    return int(np.argmin([np.abs(mean - np.array(c)).sum() for c in PALETTE]))


def heic_bytes(
    *images: Image.Image,
    orientation: int = 1,
    primary: int = 0,
    quality: int = 90,
    bit_depth: int = 8,
    thumbnails: tuple[int, ...] = (),
    tile_size: int = 0,
) -> bytes:
    """A HEIC file holding ``images`` (the ``primary`` one is what viewers show).

    ``orientation`` is written the way iPhones do: as the container's rotation/mirror
    (``irot``/``imir``, which the decoder applies) with the same value in EXIF.
    ``bit_depth`` 10 writes an HDR file from 16-bit samples. Encoded with pillow-heif's
    x265 encoder (the functions only decode with it). ``thumbnails``: the longer side of
    each thumbnail to store beside every image (libheif scales them, nearest neighbour, and
    gives them the image's rotation); ``tile_size`` > 0 writes each image as a grid of
    tiles of that size, as iPhones do (512).
    """
    import io

    import pillow_heif

    def heif_of(img: Image.Image):
        if bit_depth == 8:
            return img
        rgb16 = (np.asarray(img.convert("RGB"), dtype=np.uint16) << 8).astype("<u2")
        return pillow_heif.from_bytes("RGB;16", img.size, rgb16.tobytes())

    first = heif_of(images[0])
    heif = pillow_heif.from_pillow(first) if bit_depth == 8 else first
    for img in images[1:]:
        if bit_depth == 8:
            heif.add_from_pillow(img)
        else:
            heif.add_from_heif(heif_of(img))
    exif = Image.Exif()
    exif[0x0112] = orientation
    for i, frame in enumerate(heif):
        frame.info["exif"] = exif.tobytes()
        frame.info["primary"] = i == primary
    buf = io.BytesIO()
    heif.save(
        buf,
        quality=quality,
        primary_index=primary,
        thumbnails=list(thumbnails),
        tile_size=tile_size,
    )
    return buf.getvalue()
