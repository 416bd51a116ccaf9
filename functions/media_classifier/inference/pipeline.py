"""Bytes or a local file in, a classification out: the path every entry point shares.

The Storage trigger, the HTTPS functions, the CLI, the evaluation and the benchmark
all call :func:`classify_file` or :func:`classify_bytes`, so what is measured is what
is served. Nothing here touches Firebase: results are plain data that callers store.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.inference.model import Model, best_labels
from media_classifier.media import images, video
from media_classifier.media.images import DECODE_ERRORS, too_many_pixels
from media_classifier.media.segments import build_segments
from media_classifier.media.sniff import HEAD_BYTES, MediaType, sniff
from media_classifier.media.video import sampling_interval

if TYPE_CHECKING:
    import numpy as np

#: Per-frame top labels kept in the per-frame detail.
FRAME_TOP_K = 3
#: An animation may hold this many times ``max_pixels`` in all its frames together.
#: Why: Pillow composites every frame on the full canvas to seek, so a 500-byte GIF
#: of 20 1x1 frames on a 7000x7000 screen took 12 s; with 2,000 frames it would
#: outlive the function's timeout and never get a result document.
ANIMATION_PIXELS_FACTOR = 20
#: Animations with more frames are refused (TOO_LONG) before any is decoded: reading each
#: frame's duration decodes it, and a 100 MB GIF can hold millions of tiny frames.
MAX_ANIMATION_FRAMES = 20_000


@dataclass(frozen=True)
class Limits:
    """Bounds that keep one request inside the function's memory and time."""

    max_bytes: int = 100 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_video_seconds: float = 600.0
    frame_interval_sec: float = 1.0
    max_frames: int = 600
    #: Frames per inference call. ORT's CPU time per frame is the same at 1-16 (~5 ms),
    #: but its activation memory grows with the batch: peak RSS of a video request is
    #: ~170 MiB at 4 and ~490 MiB at 16, times the HTTPS concurrency (bench/README.md).
    batch_size: int = 4


@dataclass
class Classification:
    """The result of one file: the fields a result document and an HTTPS reply share."""

    kind: str
    content_type: str
    labels: list[dict[str, Any]]
    model: dict[str, str]
    timings: dict[str, float]
    video: dict[str, Any] | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    #: The picture's (or the whole clip's) unit vector, if the model has an embedding output.
    embedding: list[float] | None = None
    #: One unit vector per ``video["segments"]`` entry, in the same order (videos only).
    segment_embeddings: list[list[float]] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """Document/JSON fields (per-frame detail is stored separately, see ``frames``)."""
        return {
            "kind": self.kind,
            "contentType": self.content_type,
            "labels": self.labels,
            "model": self.model,
            "timings": self.timings,
            "video": self.video,
        }


class _Clock:
    """Milliseconds per stage, accumulated (video stages interleave)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[stage] = round(self.timings.get(stage, 0.0) + (now - since) * 1000, 2)
        return now

    def total(self) -> dict[str, float]:
        self.timings["total"] = round((time.perf_counter() - self._start) * 1000, 2)
        return self.timings


def detect(path: str) -> MediaType:
    """Sniff a local file's type from its first bytes."""
    with open(path, "rb") as fh:
        return sniff(fh.read(HEAD_BYTES))


def check_size(size: int, limits: Limits) -> None:
    """Refuse a file by its byte size before reading it."""
    if size > limits.max_bytes:
        raise MediaError(
            ErrorCode.TOO_LARGE,
            f"file is {size:,} bytes; the limit is {limits.max_bytes:,}",
        )


def classify_file(path: str, model: Model, *, top_k: int, limits: Limits) -> Classification:
    """Classify the image or video in a local file."""
    check_size(os.path.getsize(path), limits)
    media = detect(path)
    if media.kind == "video":
        return _classify_video(path, media, model, top_k=top_k, limits=limits)
    with open(path, "rb") as fh:
        data = fh.read()
    return _classify_image_bytes(data, media, model, top_k=top_k, limits=limits)


def classify_bytes(data: bytes, model: Model, *, top_k: int, limits: Limits) -> Classification:
    """Classify media held in memory (HTTPS bodies); videos go through a temporary file."""
    check_size(len(data), limits)
    media = sniff(data[:HEAD_BYTES])
    if media.kind == "image":
        return _classify_image_bytes(data, media, model, top_k=top_k, limits=limits)
    with tempfile.NamedTemporaryFile(suffix=".media", delete=True) as tmp:
        tmp.write(data)
        tmp.flush()
        return _classify_video(tmp.name, media, model, top_k=top_k, limits=limits)


def model_ref(model: Model) -> dict[str, str]:
    """The ``model`` field of a result: which model file produced it.

    ``sha`` is the file's content hash (:mod:`inference.identity`): it tells a retrained
    file from the one it replaced even when id and version stay the same.
    """
    return {"id": model.key, "name": model.name, "version": model.version, "sha": model.sha}


def _classify_image_bytes(
    data: bytes, media: MediaType, model: Model, *, top_k: int, limits: Limits
) -> Classification:
    import numpy as np

    clock = _Clock()
    t = time.perf_counter()
    img = images.open_image(data, max_pixels=limits.max_pixels)
    if images.is_animated(img):
        return _classify_animation(img, media, model, top_k=top_k, limits=limits, clock=clock)
    rgb = images.load_rgb(img, target=model.input_size, policy=model.resize_policy, data=data)
    array = images.fit_to_model(rgb, model.input_size, model.resize_policy)
    t = clock.add("decode", t)
    probs, vectors = model.predict_with_embedding(np.expand_dims(array, 0))
    clock.add("inference", t)
    return Classification(
        kind="image",
        content_type=media.mime,
        labels=best_labels(probs[0], model.labels, top_k),
        model=model_ref(model),
        timings=clock.total(),
        embedding=None if vectors is None else unit(vectors[0]),
    )


def unit(vector: np.ndarray) -> list[float]:
    """``vector`` scaled to length 1, as plain floats (what Firestore stores and searches)."""
    import numpy as np

    norm = float(np.linalg.norm(vector))
    return [float(x) for x in (vector / norm if norm > 0 else vector)]


def _segment_vectors(
    times: list[float], vectors: np.ndarray, segments: list[dict[str, Any]]
) -> list[list[float]]:
    """One unit vector per segment: the mean direction of the frames shown in it (pure)."""
    import numpy as np

    at = np.asarray(times)
    found = []
    for segment in segments:
        inside = (at >= segment["startSec"] - 1e-6) & (at < segment["endSec"] - 1e-6)
        found.append(unit(vectors[inside].sum(axis=0) if inside.any() else vectors.sum(axis=0)))
    return found


def _batches(
    frames: Iterable[tuple[float, np.ndarray]], size: int, clock: _Clock
) -> Iterator[tuple[list[float], np.ndarray]]:
    """Group decoded frames into inference batches, timing the decoding."""
    import numpy as np

    times: list[float] = []
    arrays: list[np.ndarray] = []
    t = time.perf_counter()
    for ts, frame in frames:
        times.append(ts)
        arrays.append(frame)
        if len(arrays) == size:
            clock.add("decode", t)
            yield times, np.stack(arrays)
            times, arrays = [], []
            t = time.perf_counter()
    clock.add("decode", t)
    if arrays:
        yield times, np.stack(arrays)


def _summarize_frames(
    frames: Iterable[tuple[float, np.ndarray]],
    model: Model,
    *,
    top_k: int,
    limits: Limits,
    clock: _Clock,
    interval: float,
    duration: float,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], Any]:
    """Run the model over sampled frames: overall labels, segments, per-frame detail, vectors.

    ``interval`` is the sampling interval actually used (stretched when the video is
    longer than ``max_frames`` intervals), so segments end where their frames do.

    Only a running sum of probabilities and each frame's top labels are kept, so
    memory does not grow with the number of frames beyond a few numbers per frame (and
    the frame's vector, ``D`` floats, when the model has an embedding output).
    """
    import numpy as np

    total = None
    detail: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    for times, batch in _batches(frames, limits.batch_size, clock):
        t = time.perf_counter()
        probs, embedded = model.predict_with_embedding(batch)
        clock.add("inference", t)
        if embedded is not None:
            vectors.extend(embedded)
        total = probs.sum(axis=0) if total is None else total + probs.sum(axis=0)
        for ts, row in zip(times, probs, strict=True):
            detail.append(
                {"t": round(ts, 3), "labels": best_labels(row, model.labels, FRAME_TOP_K)}
            )
    if total is None:
        raise MediaError(ErrorCode.CORRUPT_MEDIA, "no frame of the video could be decoded")
    labels = best_labels(total / len(detail), model.labels, top_k)
    segments = build_segments(
        [f["t"] for f in detail],
        [f["labels"][0]["label"] for f in detail],
        [f["labels"][0]["score"] for f in detail],
        interval=interval,
        duration=duration,
    )
    return labels, segments, detail, np.stack(vectors) if vectors else None


def _video_fields(info: Any, detail: list[dict[str, Any]], segments: list[dict]) -> dict:
    return {
        "durationSec": round(float(info.duration_sec), 3),
        "width": int(info.width),
        "height": int(info.height),
        "fps": round(float(info.fps), 3),
        "framesAnalyzed": len(detail),
        "segments": segments,
    }


def _video_classification(
    info: Any,
    frames: Iterable[tuple[float, np.ndarray]],
    media: MediaType,
    model: Model,
    top_k: int,
    limits: Limits,
    clock: _Clock,
) -> Classification:
    """The result of a video or an animation from its sampled frames."""
    interval = sampling_interval(info.duration_sec, limits.frame_interval_sec, limits.max_frames)
    labels, segments, detail, vectors = _summarize_frames(
        frames,
        model.for_frames(),
        top_k=top_k,
        limits=limits,
        clock=clock,
        interval=interval,
        duration=info.duration_sec,
    )
    return Classification(
        kind="video",
        content_type=media.mime,
        labels=labels,
        model=model_ref(model),
        timings=clock.total(),
        video=_video_fields(info, detail, segments),
        frames=detail,
        embedding=None if vectors is None else unit(vectors.sum(axis=0)),
        segment_embeddings=(
            [] if vectors is None else _segment_vectors([f["t"] for f in detail], vectors, segments)
        ),
    )


def _check_duration(duration: float, limits: Limits) -> None:
    if duration > limits.max_video_seconds:
        raise MediaError(
            ErrorCode.TOO_LONG,
            f"video lasts {duration:.1f} s; the limit is {limits.max_video_seconds:.0f} s",
        )


def _classify_video(
    path: str, media: MediaType, model: Model, *, top_k: int, limits: Limits
) -> Classification:
    clock = _Clock()
    t = time.perf_counter()
    info = video.probe_video(path)
    clock.add("probe", t)
    _check_duration(info.duration_sec, limits)
    frames = video.sample_frames(
        path,
        info,
        size=model.input_size,
        policy=model.resize_policy,
        every_sec=limits.frame_interval_sec,
        max_frames=limits.max_frames,
    )
    try:
        return _video_classification(info, frames, media, model, top_k, limits, clock)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def _classify_animation(
    img: Any, media: MediaType, model: Model, *, top_k: int, limits: Limits, clock: _Clock
) -> Classification:
    """Animated GIF/WebP: Pillow decodes the frames, then the video path takes over."""
    width, height = img.size
    frames = img.n_frames  # frame headers only: ~3 us a frame, bounded by max_bytes
    if frames > MAX_ANIMATION_FRAMES:
        raise MediaError(
            ErrorCode.TOO_LONG,
            f"animation has {frames:,} frames; the limit is {MAX_ANIMATION_FRAMES:,}",
        )
    total = frames * width * height
    if total > ANIMATION_PIXELS_FACTOR * limits.max_pixels:
        raise MediaError(
            ErrorCode.TOO_LARGE,
            f"animation has {frames:,} frames of {width}x{height} = {total:,} pixels; "
            f"the limit is {ANIMATION_PIXELS_FACTOR * limits.max_pixels:,}",
        )
    from PIL import Image

    bombs = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    try:
        with warnings.catch_warnings():
            # A later GIF frame may be larger than the screen the header declared, and
            # Pillow grows the canvas to fit it: its bomb guard is the only check left.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            t = time.perf_counter()
            info = video.probe_animation(img)
            clock.add("probe", t)
            _check_duration(info.duration_sec, limits)
            frames = video.sample_animation(
                img,
                size=model.input_size,
                policy=model.resize_policy,
                every_sec=limits.frame_interval_sec,
                max_frames=limits.max_frames,
            )
            return _video_classification(info, frames, media, model, top_k, limits, clock)
    except bombs as exc:
        raise too_many_pixels(exc, limits.max_pixels, "an animation frame") from exc
    except DECODE_ERRORS as exc:  # a later frame is broken: Pillow only finds out on seek
        raise MediaError(
            ErrorCode.CORRUPT_MEDIA, f"the animation cannot be decoded: {exc}"
        ) from exc
