"""Animated GIF / WebP / PNG / AVIF through Pillow, with the same contract as videos."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.media.images import fit_to_model
from media_classifier.media.video.plan import sampling_interval, tick_count
from media_classifier.media.video.probe import VideoInfo

if TYPE_CHECKING:  # numpy and Pillow are imported lazily: cold start matters.
    import numpy as np
    from PIL import Image

# Browsers show GIF frames with a delay of 0 or 10 ms for 100 ms; so do we.
_MIN_FRAME_MS = 20
_DEFAULT_FRAME_MS = 100


# What Pillow raises on a truncated or damaged frame.
_PIL_ERRORS = (OSError, EOFError, ValueError, SyntaxError, IndexError)


def _frame_durations_ms(img: Image.Image) -> list[int]:
    """Display duration of each frame, seeking through the animation once.

    A frame that cannot be read makes the animation CORRUPT_MEDIA. Unlike a
    truncated video (whose first minutes are still worth a timeline), an
    animation is small and either whole or broken; the hostile-input corpus
    expects CORRUPT_MEDIA for a GIF whose last frame is cut.
    """
    durations: list[int] = []
    try:
        for i in range(getattr(img, "n_frames", 1)):
            img.seek(i)
            if img.format != "GIF":
                img.load()  # WebP sets a frame's duration when it decodes it, not on seek
            ms = img.info.get("duration") or 0
            durations.append(int(ms) if ms >= _MIN_FRAME_MS else _DEFAULT_FRAME_MS)
        img.seek(0)
    except _PIL_ERRORS as exc:
        raise MediaError(ErrorCode.CORRUPT_MEDIA, f"the animation cannot be read: {exc}") from exc
    return durations


def probe_animation(img: Image.Image) -> VideoInfo:
    """VideoInfo for an animated GIF/WebP/PNG/AVIF from Pillow's frame durations.

    Why Pillow: ffmpeg decodes GIF but not animated WebP, and Pillow already
    knows both timelines. Costs one pass over the frames (Pillow decodes to
    seek). A single-frame image is a 1-frame "video" of its frame's duration.
    """
    durations = _frame_durations_ms(img)
    total = sum(durations) / 1000.0
    return VideoInfo(
        duration_sec=total,
        width=img.size[0],
        height=img.size[1],
        fps=round(len(durations) / total, 3) if total else 0.0,
        rotation=0,
        codec=(img.format or "unknown").lower(),
        has_audio=False,
    )


def _to_rgb(frame: Image.Image) -> Image.Image:
    """Flatten transparency onto white, as a browser on a white page shows it."""
    from PIL import Image

    if frame.mode == "RGB":
        return frame
    rgba = frame.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, (255, 255, 255))
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def sample_animation(
    img: Image.Image,
    *,
    size: tuple[int, int],
    policy: str,
    every_sec: float = 1.0,
    max_frames: int,
) -> Iterator[tuple[float, np.ndarray]]:
    """Same contract as :func:`sample_frames`, for an animated PIL image.

    Frame ``k`` is the animation frame on screen at ``k * interval`` (interval
    from :func:`sampling_interval`). Frames are resized with
    ``images.fit_to_model``, the one resize path shared with still images.
    """
    durations = _frame_durations_ms(img)
    total_ms = sum(durations)
    interval = sampling_interval(total_ms / 1000.0, every_sec, max_frames)
    ticks = tick_count(total_ms / 1000.0, interval, max_frames)
    produced = 0
    start_ms = 0.0
    for i, dur in enumerate(durations):
        end_ms = start_ms + dur
        arr = None
        while produced < ticks and produced * interval * 1000.0 < end_ms - 1e-6:
            if arr is None:
                try:
                    img.seek(i)
                    arr = fit_to_model(_to_rgb(img), size, policy)
                except _PIL_ERRORS as exc:  # whole or broken, see _frame_durations_ms
                    raise MediaError(
                        ErrorCode.CORRUPT_MEDIA, f"the animation cannot be decoded: {exc}"
                    ) from exc
            yield round(produced * interval, 6), arr
            produced += 1
        start_ms = end_ms
        if produced >= ticks:
            break
