"""Videos (and animated GIF/WebP/PNG/AVIF) as a stream of model-sized frames with timestamps.

Why this shape: the pipeline only ever needs a few frames per second at the
model's input size, so ffmpeg does the sampling (``fps`` filter), the rotation
(autorotate) and the scaling, and writes raw RGB at model size into a pipe.
Python reads exact frame-size chunks, so it never holds a full-resolution frame
and memory does not grow with the video's length.

Public API (all the pipeline needs):

- :func:`probe_video` -> :class:`VideoInfo` (duration, display size, fps, ...)
- :func:`sampling_interval` -> the interval actually used (``every_sec``,
  stretched so that ``max_frames`` frames cover the whole video)
- :func:`sample_frames` -> ``(timestamp_sec, uint8 HxWx3)`` pairs
- :func:`probe_animation` / :func:`sample_animation`: the same contract for
  animated GIF, WebP, PNG and AVIF through Pillow (ffmpeg cannot decode animated WebP).

Timestamps: frame ``k`` is what is on screen at ``k * interval`` seconds (the
last frame shown at or before that time), so a variable-frame-rate video is
sampled on the wall clock, not by frame count. With ``-skip_frame noref`` it
may be a few frames older than that; in the keyframe-only fast path it is a
keyframe less than half an interval away.

Speed (60 s 1280x720 H.264 testsrc2, x264 default 250-frame GOP, 1 frame/s to
224x224, 2 cores; details in ``bench/README.md``): about 1.6 s, against 2.9 s
for one plain ``fps``-filter ffmpeg; 0.4 s when keyframes are 1 s apart. The
decode strategy is chosen per file from its keyframe index (a cheap packet
scan, no decoding):

1. keyframes near every sampling tick (phone videos, screen captures with short
   GOPs, sparse sampling): decode keyframes only (``-skip_frame nokey``), ~10x
   faster than decoding everything;
2. otherwise decode everything but the frames nothing references
   (``-skip_frame noref``: the other frames are decoded exactly; a tick may get
   the frame one or two frames before it), split at keyframes into one
   single-threaded ffmpeg per CPU, which beats ffmpeg's own frame threading on
   a busy 2-core machine.

Tried and rejected: ``-skip_loop_filter all`` (another ~15 % off the decode,
but the missing deblocking drifts through the GOP: PSNR 38-50 dB, and the int8
MobileNetV2's top-1 changed on 18-38 % of Big Buck Bunny / bikes frames);
``-skip_frame bidir`` (x264's B-pyramid references B-frames: garbage frames);
``-discard nokey`` (the MP4 demuxer then assigns the wrong pts with B-frames);
one seek (``-ss`` before ``-i``) per sample (decodes from the previous keyframe
every time: ~10x slower with x264's 250-frame GOP).
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import re
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING

from media_classifier.errors import ErrorCode, MediaError

if TYPE_CHECKING:  # numpy and Pillow are imported lazily: cold start matters.
    import numpy as np
    from PIL import Image

# Containers ffmpeg may open. Anything else (HLS playlists, concat scripts,
# image2 patterns, network protocols) is refused by ffmpeg itself, so a crafted
# upload can never make it read other files or reach the network. Audio
# containers are listed so an audio-only upload is reported as such.
_FORMAT_WHITELIST = "mov,matroska,avi,mpeg,mpegts,flv,ogg,mp3,wav,flac,aac"
_PROTOCOL_WHITELIST = "file"
PROBE_TIMEOUT_SEC = 20.0
# A sampling tick is "covered" by a keyframe closer than this many intervals.
_KEYFRAME_TOLERANCE = 0.45
#: Same as ``images.CROP_FRACTION`` (kept here so importing video does not import Pillow).
CROP_FRACTION = 0.875
# Frames a parallel chunk may decode ahead of the consumer (x 150 KB at 224).
_CHUNK_QUEUE_FRAMES = 32
# Chunks per decoder process when the video is split. More would balance uneven
# keyframe gaps, but measured on 2 cores 4 per worker was 10-25 % slower than 1:
# every extra ffmpeg start-up and chunk tail costs more than the imbalance.
_CHUNKS_PER_WORKER = 1


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know before decoding (limits, result fields).

    ``width``/``height`` are the display size: after rotation and with
    non-square pixels (SAR) applied. ``rotation`` is the clockwise rotation in
    degrees (0, 90, 180, 270) that the player (and our decoder) applies.
    ``fps`` is the nominal rate ffmpeg reports (0.0 when unknown).
    """

    duration_sec: float
    width: int
    height: int
    fps: float
    rotation: int
    codec: str
    has_audio: bool


# --- ffmpeg plumbing ------------------------------------------------------------------


def ffmpeg_exe() -> str:
    """The ffmpeg bundled by imageio-ffmpeg (imported lazily, it resolves a path)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _cpu_count() -> int:
    """CPUs this process may use (affinity), not the host's: Cloud Run shares hosts."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _input_args(path: str) -> list[str]:
    """``-i`` with the whitelists; ``file:`` so a name with ':' is never a protocol."""
    return [
        "-format_whitelist",
        _FORMAT_WHITELIST,
        "-protocol_whitelist",
        _PROTOCOL_WHITELIST,
        "-i",
        "file:" + os.path.abspath(path),
    ]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg to completion with a hard timeout (the process is killed on expiry)."""
    try:
        return subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-hide_banner", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MediaError(
            ErrorCode.CORRUPT_MEDIA, f"ffmpeg did not finish reading the file in {timeout:.0f} s"
        ) from exc


# --- probing ----------------------------------------------------------------------------

_STREAM_RE = re.compile(r"^\s*Stream #\d+:(\d+)\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_SIZE_RE = re.compile(r"\b([1-9]\d{0,4})x([1-9]\d{0,4})\b")
_SAR_RE = re.compile(r"\[SAR (\d+):(\d+) DAR")
_FPS_RE = re.compile(r"([\d.]+)(k?) fps")
_TBR_RE = re.compile(r"([\d.]+)(k?) tbr")
_DISPLAYMATRIX_RE = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_ROTATE_TAG_RE = re.compile(r"^\s*rotate\s*:\s*(-?\d+)", re.MULTILINE)


def _stream_blocks(text: str) -> list[tuple[str, str, str]]:
    """(kind, stream line rest, indented block below it) for each stream of input 0."""
    blocks: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        m = _STREAM_RE.match(line)
        if m:
            blocks.append((m.group(2), m.group(3), []))
        elif not line.strip():
            continue
        elif blocks and line.startswith("    "):
            blocks[-1][2].append(line)
        elif blocks and not line.startswith("  "):
            break  # end of the input description
    return [(kind, head, "\n".join(body)) for kind, head, body in blocks]


def _rate(match: re.Match[str] | None) -> float:
    if not match:
        return 0.0
    return float(match.group(1)) * (1000.0 if match.group(2) else 1.0)


def parse_probe(text: str) -> VideoInfo | None:
    """Parse ``ffmpeg -i`` stderr. None when there is no (non-cover-art) video stream.

    Why parse text: imageio-ffmpeg ships ffmpeg without ffprobe, and its own
    header parser only knows the legacy ``rotate`` tag, not the display matrix
    that current ffmpeg prints. Raises CORRUPT_MEDIA when ffmpeg could not open
    the input at all.
    """
    if "Input #0" not in text:
        last = text.strip().splitlines()[-1:] or ["no output"]
        if "Invalid argument" in text:
            raise MediaError(ErrorCode.UNSUPPORTED_MEDIA, "container format not accepted")
        raise MediaError(ErrorCode.CORRUPT_MEDIA, f"cannot open the video: {last[0][:200]}")
    blocks = _stream_blocks(text)
    has_audio = any(kind == "Audio" for kind, _, _ in blocks)
    for kind, head, body in blocks:
        if kind != "Video" or "(attached pic)" in head:
            continue  # cover art inside an audio file is not a video
        codec = head.split(None, 1)[0].rstrip(",") if head.strip() else "unknown"
        size = _SIZE_RE.search(head)
        if not size:
            raise MediaError(ErrorCode.CORRUPT_MEDIA, "the video stream has no frame size")
        width, height = int(size.group(1)), int(size.group(2))
        sar = _SAR_RE.search(head)
        if sar and int(sar.group(1)) > 0 and int(sar.group(2)) > 0:
            width = max(1, round(width * int(sar.group(1)) / int(sar.group(2))))
        rotation = 0
        matrix = _DISPLAYMATRIX_RE.search(body)
        tag = _ROTATE_TAG_RE.search(body)
        if matrix:  # ffmpeg prints the display matrix angle counter-clockwise
            rotation = round(-float(matrix.group(1)) / 90.0) * 90 % 360
        elif tag:  # legacy tag, clockwise
            rotation = round(int(tag.group(1)) / 90.0) * 90 % 360
        if rotation in (90, 270):
            width, height = height, width
        fps = _rate(_FPS_RE.search(head)) or _rate(_TBR_RE.search(head))
        dur = _DURATION_RE.search(text)
        duration = (
            int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
        )
        return VideoInfo(
            duration_sec=duration,
            width=width,
            height=height,
            fps=fps,
            rotation=rotation,
            codec=codec,
            has_audio=has_audio,
        )
    return None


def _scan_packets(path: str, *, timeout: float) -> tuple[list[float], float]:
    """Presentation times of the video's keyframes, and the stream's end time.

    Demuxing only (``-c copy`` to ``framecrc``, whose lines carry each packet's
    pts and a flag for non-key packets), no decoding: ~70 ms for a 60 s 720p
    MP4. Used to choose the decode strategy and for files whose header has no
    duration (WebM recorded by browsers' MediaRecorder). Not ``-discard
    nokey``: with B-frames the MP4 demuxer then reports the wrong pts.
    """
    args = ["-loglevel", "error", *_input_args(path)]
    args += ["-map", "0:V:0", "-c", "copy", "-f", "framecrc", "pipe:1"]
    proc = _run(args, timeout)
    timebase = Fraction(1, 1)
    keyframes: list[float] = []
    end = 0.0
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb 0:"):
            timebase = Fraction(line.split(":", 1)[1].strip())
            continue
        fields = [f.strip() for f in line.split(",")]
        if line.startswith("#") or len(fields) < 6 or fields[0] != "0":
            continue
        try:
            pts, dur = int(fields[2]), int(fields[3])
            flags = next((int(f[2:], 16) for f in fields[6:] if f.startswith("F=")), 1)
        except ValueError:
            continue
        end = max(end, float((pts + dur) * timebase))
        if flags & 1:  # AV_PKT_FLAG_KEY; framecrc prints F= only when flags differ from key
            keyframes.append(float(pts * timebase))
    keyframes.sort()
    return keyframes, end


def probe_video(path: str, *, timeout: float = PROBE_TIMEOUT_SEC) -> VideoInfo:
    """Describe a video file without decoding it (bounded by ``timeout`` seconds).

    Raises ``MediaError``: UNSUPPORTED_MEDIA when there is no video stream
    (audio only, even with cover art) or the container is not accepted;
    CORRUPT_MEDIA when ffmpeg cannot read it (truncated header, garbage).
    """
    proc = _run(["-loglevel", "info", *_input_args(path)], timeout)
    text = proc.stderr.decode("utf-8", "replace")
    info = parse_probe(text)
    if info is None:
        raise MediaError(ErrorCode.UNSUPPORTED_MEDIA, "the file has no video stream")
    if info.duration_sec <= 0:
        _, end = _scan_packets(path, timeout=timeout)
        if end <= 0:
            raise MediaError(ErrorCode.CORRUPT_MEDIA, "the video stream has no packets")
        info = dataclasses.replace(info, duration_sec=end)
    return info


# --- sampling plan -------------------------------------------------------------------


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


def _tick_count(duration_sec: float, interval: float, max_frames: int) -> int:
    """Ticks 0, interval, 2*interval, ... strictly before the end (max_frames if unknown)."""
    if duration_sec <= 0:
        return max_frames
    return max(1, min(max_frames, math.ceil(duration_sec / interval - 1e-6)))


def _keyframes_cover(keyframes: list[float], ticks: int, interval: float) -> bool:
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


def _split_points(
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


def _fit_filter(size: tuple[int, int], policy: str) -> str:
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


# --- decoding ---------------------------------------------------------------------------


class _Decoder:
    """One ffmpeg process writing raw RGB frames to a pipe, with its stderr drained.

    Why a class: the process must die on every exit path (consumer stops early,
    exception, timeout), and stderr must be read concurrently or a stream of
    decoder warnings would fill the pipe and hang ffmpeg.
    """

    def __init__(self, args: list[str], frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        self.errors: deque[str] = deque(maxlen=20)
        self.proc = subprocess.Popen(
            [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        self._stderr = threading.Thread(target=self._drain, daemon=True)
        self._stderr.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        try:
            for raw in self.proc.stderr:
                self.errors.append(raw.decode("utf-8", "replace").strip())
        except (OSError, ValueError):  # closed under us: the process is gone anyway
            return

    def read_frame(self) -> bytearray | None:
        """The next frame's bytes, or None at the end (a partial last frame is dropped)."""
        assert self.proc.stdout is not None
        buf = bytearray(self.frame_bytes)
        view = memoryview(buf)
        got = 0
        while got < self.frame_bytes:
            n = self.proc.stdout.readinto(view[got:])  # type: ignore[attr-defined]  # a BufferedReader
            if not n:
                return None
            got += n
        return buf

    def close(self) -> int | None:
        """Kill if still running, reap (no zombie), return the exit code."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - kill -9 does not fail
            code = None
        self._stderr.join(timeout=2)  # EOF now that the process is gone
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


def _decoder_args(
    path: str,
    *,
    mode: str,
    start_sec: float,
    first_tick: int,
    interval: float,
    threads: int,
    fit: str,
) -> list[str]:
    rate = Fraction(1) / Fraction(interval).limit_denominator(1_000_000)
    args = ["-threads", str(threads)]
    if mode == "keyframes":
        # eof_action=pass: otherwise the last keyframe's tick is dropped at EOF.
        args += ["-skip_frame", "nokey"]
        fps = f"fps=fps={rate}:round=near:start_time=0:eof_action=pass"
    else:
        args += ["-skip_frame", "noref"]
        fps = f"fps=fps={rate}:round=up:start_time={first_tick * interval:.6f}"
    pre = ""
    if start_sec > 0:
        # Fast seek to the chunk's keyframe; setpts puts times back on the file's clock.
        start = math.floor(start_sec * 1e6) / 1e6
        args += ["-ss", f"{start:.6f}"]
        pre = f"setpts=PTS+{start:.6f}/TB,"
    args += ["-an", "-sn", "-dn", *_input_args(path), "-map", "0:V:0"]
    args += ["-vf", f"{pre}{fps},{fit},format=rgb24", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    return [*args, "pipe:1"]


def sample_frames(
    path: str,
    info: VideoInfo,
    *,
    size: tuple[int, int],
    policy: str,
    every_sec: float = 1.0,
    max_frames: int,
    timeout: float | None = None,
    workers: int | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(timestamp_sec, frame)`` with frame uint8 ``(H, W, 3)`` RGB at ``size`` (h, w).

    One frame every ``sampling_interval(info.duration_sec, every_sec,
    max_frames)`` seconds, at most ``max_frames``. Rotation metadata is
    honoured. A truncated file yields what decodes, then stops; if nothing
    decodes, CORRUPT_MEDIA. ``timeout`` (default: 30 s + the video's
    duration) bounds the whole iteration; on expiry the decoders are killed
    and TIMEOUT is raised. Closing the generator early (``break``,
    exception) kills the ffmpeg processes at once. ``workers``: parallel
    decoder processes (default: the CPUs this process may use).
    """
    import numpy as np

    interval = sampling_interval(info.duration_sec, every_sec, max_frames)
    ticks = _tick_count(info.duration_sec, interval, max_frames)
    fit = _fit_filter(size, policy)
    frame_bytes = size[0] * size[1] * 3
    cpus = workers or _cpu_count()
    budget = timeout if timeout is not None else 30.0 + info.duration_sec
    keyframes, video_end = _scan_packets(path, timeout=min(budget, PROBE_TIMEOUT_SEC))
    if 0 < video_end < info.duration_sec:
        # The container's duration covers every stream; no tick after the last picture.
        ticks = _tick_count(video_end, interval, max_frames)

    if info.duration_sec > 0 and _keyframes_cover(keyframes, ticks, interval):
        plan = [(0, 0.0, ticks)]
        mode, threads = "keyframes", cpus
    else:
        # One keyframe-aligned chunk per CPU, each decoded by a single-threaded ffmpeg.
        parts = min(_CHUNKS_PER_WORKER * cpus, ticks // 2) if cpus > 1 else 1
        chunks = _split_points(keyframes, ticks, interval, parts)
        ends = [first for first, _ in chunks[1:]] + [max_frames]
        plan = [
            (first, start, end - first) for (first, start), end in zip(chunks, ends, strict=True)
        ]
        mode, threads = "all", (1 if len(plan) > 1 else cpus)

    pool = _ChunkPool(
        [
            _decoder_args(
                path,
                mode=mode,
                start_sec=start_sec,
                first_tick=first,
                interval=interval,
                threads=threads,
                fit=fit,
            )
            for first, start_sec, _ in plan
        ],
        [count for _, _, count in plan],
        frame_bytes=frame_bytes,
        workers=cpus,
    )
    watchdog = threading.Timer(budget, pool.expire)
    watchdog.daemon = True
    try:
        watchdog.start()
        produced = 0
        for (first, _, _), chunk in zip(plan, pool.chunks(), strict=True):
            for i, buf in enumerate(chunk):
                if pool.expired.is_set():  # frames still in the pipe are past the deadline
                    break
                frame = np.frombuffer(buf, dtype=np.uint8).reshape(size[0], size[1], 3)
                yield round((first + i) * interval, 6), frame
                produced += 1
                if produced >= max_frames:
                    break
            if produced >= max_frames or pool.expired.is_set():
                break
        if pool.expired.is_set():
            raise MediaError(ErrorCode.TIMEOUT, f"decoding took longer than {budget:.0f} s")
        if produced == 0:
            detail = pool.last_error() or "no frame decoded"
            raise MediaError(ErrorCode.CORRUPT_MEDIA, f"no frame could be decoded: {detail[:200]}")
    finally:
        watchdog.cancel()
        pool.close()


class _ChunkPool:
    """Runs one ffmpeg per chunk, at most ``workers`` at a time, and hands frames out in order.

    Why: a chunk's ffmpeg blocks as soon as its pipe is full, so chunks only
    decode in parallel if threads drain them ahead of the consumer. Chunk ``i``
    starts once chunk ``i - workers`` has finished decoding and the consumer has
    reached it, so at most ``workers + 1`` chunks hold frames, each at most
    ``_CHUNK_QUEUE_FRAMES``: memory stays flat however long the video. The
    first chunk (the only one, in the keyframe and unsplit cases) is read by
    the consumer itself, without a thread.
    """

    def __init__(
        self, args: list[list[str]], counts: list[int], *, frame_bytes: int, workers: int
    ) -> None:
        self._args, self._counts, self._frame_bytes = args, counts, frame_bytes
        self._workers = max(1, workers)
        self._lock = threading.Lock()
        self._decoders: list[_Decoder] = []
        self._closed = False
        self.expired = threading.Event()
        n = len(args)
        self._done = [threading.Event() for _ in range(n)]  # chunk decoded, process gone
        self._reached = [threading.Event() for _ in range(n)]  # consumer started the chunk
        self._queues: list[queue.Queue[bytearray]] = [
            queue.Queue(maxsize=_CHUNK_QUEUE_FRAMES) for _ in range(n)
        ]
        self._first = self._start(0)
        for i in range(1, n):
            threading.Thread(target=self._run, args=(i,), daemon=True).start()

    def _start(self, i: int) -> _Decoder | None:
        with self._lock:  # close() either sees this decoder or we see _closed
            if self._closed or self.expired.is_set():
                return None
            decoder = _Decoder(self._args[i], self._frame_bytes)
            self._decoders.append(decoder)
            return decoder

    def _frames(self, decoder: _Decoder, count: int) -> Iterator[bytearray]:
        for _ in range(count):
            buf = decoder.read_frame()
            if buf is None:
                return
            yield buf

    def _run(self, i: int) -> None:
        try:
            if i >= self._workers:
                gate = i - self._workers
                while not (self._done[gate].wait(0.05) and self._reached[gate].wait(0.05)):
                    if self._closed or self.expired.is_set():
                        return
            decoder = self._start(i)
            if decoder is None:
                return
            for buf in self._frames(decoder, self._counts[i]):
                while not self._closed:  # never block forever on a consumer that left
                    try:
                        self._queues[i].put(buf, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._closed:
                    break
            decoder.close()  # read all it owes: stop it before it decodes the next chunk
        finally:
            self._done[i].set()

    def chunks(self) -> Iterator[Iterator[bytearray]]:
        """One iterator of frame buffers per chunk, in order."""
        for i in range(len(self._args)):
            self._reached[i].set()
            if i == 0:
                if self._first is not None:
                    yield self._frames(self._first, self._counts[0])
                    self._first.close()
                else:
                    yield iter(())
                self._done[0].set()  # lets chunk ``workers`` start
            else:
                yield self._drain(i)

    def _drain(self, i: int) -> Iterator[bytearray]:
        q = self._queues[i]
        while True:
            try:
                yield q.get(timeout=0.05)
            except queue.Empty:
                if self._done[i].is_set() and q.empty():
                    return

    def expire(self) -> None:
        """The time budget is spent: kill every decoder; the consumer then stops."""
        self.expired.set()
        with self._lock:
            for decoder in self._decoders:
                if decoder.proc.poll() is None:
                    decoder.proc.kill()

    def last_error(self) -> str | None:
        with self._lock:
            return next((d.errors[-1] for d in self._decoders if d.errors), None)

    def close(self) -> None:
        """Kill and reap every ffmpeg; reader threads notice and end."""
        with self._lock:
            self._closed = True
            decoders = list(self._decoders)
        for decoder in decoders:
            decoder.close()


# --- animated GIF / WebP -------------------------------------------------------------

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
    from media_classifier.images import fit_to_model

    durations = _frame_durations_ms(img)
    total_ms = sum(durations)
    interval = sampling_interval(total_ms / 1000.0, every_sec, max_frames)
    ticks = _tick_count(total_ms / 1000.0, interval, max_frames)
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
