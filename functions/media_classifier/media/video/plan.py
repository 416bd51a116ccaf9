"""Which instants of a video are analysed, and how ffmpeg decodes and fits them (pure)."""

from __future__ import annotations

import math

# A sampling tick is "covered" by a keyframe closer than this many intervals.
_KEYFRAME_TOLERANCE = 0.45
#: Same as ``images.CROP_FRACTION`` (kept here so importing video does not import Pillow).
CROP_FRACTION = 0.875


def sampling_interval(duration_sec: float, every_sec: float, max_frames: int) -> float:
    """The interval between analysed frames: ``every_sec``, stretched if needed.

    Why stretch: when ``duration / every_sec`` exceeds ``max_frames``, cutting
    the analysis off after ``max_frames`` frames would silently ignore the end
    of the video. Spreading ``max_frames`` frames evenly over the whole video
    keeps the timeline complete, just coarser. Pass the result to
    ``segments.build_segments(interval=...)``.
    """
    if every_sec <= 0 or max_frames < 1:
        raise ValueError("every_sec must be > 0 and max_frames >= 1")
    if duration_sec > 0 and duration_sec / every_sec > max_frames:
        return duration_sec / max_frames
    return every_sec


def tick_count(duration_sec: float, interval: float, max_frames: int) -> int:
    """Ticks 0, interval, 2*interval, ... strictly before the end (max_frames if unknown)."""
    if duration_sec <= 0:
        return max_frames
    return max(1, min(max_frames, math.ceil(duration_sec / interval - 1e-6)))


def keyframes_cover(keyframes: list[float], ticks: int, interval: float) -> bool:
    """True when every tick has a keyframe within ``_KEYFRAME_TOLERANCE * interval``."""
    if not keyframes:
        return False
    import bisect

    tol = _KEYFRAME_TOLERANCE * interval
    for k in range(ticks):
        t = k * interval
        i = bisect.bisect_left(keyframes, t - tol)
        if i >= len(keyframes) or keyframes[i] > t + tol:
            return False
    return True


def split_points(
    keyframes: list[float], ticks: int, interval: float, parts: int
) -> list[tuple[int, float]]:
    """(first tick, seek time) of each parallel chunk; each chunk starts at a keyframe.

    Starting at a keyframe means no frame is decoded twice. The chunk's first
    tick is the first one at or after its keyframe, so the frame on screen at
    that tick is inside the chunk.
    """
    chunks = [(0, 0.0)]
    if parts < 2 or ticks < 2 * parts:
        return chunks
    for j in range(1, parts):
        target = ticks * interval * j / parts
        key = min(keyframes, key=lambda t: abs(t - target), default=0.0)
        first_tick = math.ceil(key / interval - 1e-9)
        if chunks[-1][0] < first_tick < ticks:
            chunks.append((first_tick, key))
    return chunks


def fit_filter(size: tuple[int, int], policy: str) -> str:
    """ffmpeg filters for the resize policy, the same geometry as ``images.fit_to_model``.

    ``squash`` resizes straight to HxW. ``center_crop`` crops the centred
    window that ``fit_to_model`` resamples (a window of ``size`` covering
    ``CROP_FRACTION`` = 0.875 of the image after scaling, torchvision's 224-of-256)
    and scales only that window: fewer pixels to scale than resize-then-crop.
    The window is computed by ffmpeg from each frame (``iw``, ``ih``, ``sar``),
    after autorotation, so rotation, non-square pixels and mid-stream size
    changes are all handled. Bilinear, like the image path.
    """
    out_h, out_w = size
    scale = f"scale={out_w}:{out_h}:flags=bilinear,setsar=1"
    if policy == "squash":
        return scale
    if policy != "center_crop":
        raise ValueError(f"unknown resize policy {policy!r}")
    # s = max(W / display_w, H / h) / 0.875; window = (W / s / sar) x (H / s) pixels
    s = f"(max({out_w}/(iw*sar)\\,{out_h}/ih)/{CROP_FRACTION})"
    crop = (
        f"crop=w='min(iw\\,{out_w}/{s}/sar)':h='min(ih\\,{out_h}/{s})':x='(iw-ow)/2':y='(ih-oh)/2'"
    )
    return f"{crop},{scale}"
