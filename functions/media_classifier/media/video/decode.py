"""Sampled frames from ffmpeg pipes: one process per keyframe chunk, always reaped."""

from __future__ import annotations

import math
import queue
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING

from media_classifier.cpus import allocated_cpus
from media_classifier.errors import ErrorCode, MediaError
from media_classifier.media.video.ffmpeg import ffmpeg_exe, input_args
from media_classifier.media.video.plan import (
    fit_filter,
    keyframes_cover,
    sampling_interval,
    split_points,
    tick_count,
)
from media_classifier.media.video.probe import PROBE_TIMEOUT_SEC, VideoInfo, scan_packets

if TYPE_CHECKING:  # numpy is imported lazily: cold start matters.
    import numpy as np

# Frames a parallel chunk may decode ahead of the consumer (x 150 KB at 224).
_CHUNK_QUEUE_FRAMES = 32
# Chunks per decoder process when the video is split. More would balance uneven
# keyframe gaps, but measured on 2 cores 4 per worker was 10-25 % slower than 1:
# every extra ffmpeg start-up and chunk tail costs more than the imbalance.
_CHUNKS_PER_WORKER = 1


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
    args += ["-an", "-sn", "-dn", *input_args(path), "-map", "0:V:0"]
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
    ticks = tick_count(info.duration_sec, interval, max_frames)
    fit = fit_filter(size, policy)
    frame_bytes = size[0] * size[1] * 3
    cpus = workers or allocated_cpus()
    budget = timeout if timeout is not None else 30.0 + info.duration_sec
    keyframes, video_end = scan_packets(path, timeout=min(budget, PROBE_TIMEOUT_SEC))
    if 0 < video_end < info.duration_sec:
        # The container's duration covers every stream; no tick after the last picture.
        ticks = tick_count(video_end, interval, max_frames)

    if info.duration_sec > 0 and keyframes_cover(keyframes, ticks, interval):
        plan = [(0, 0.0, ticks)]
        mode, threads = "keyframes", cpus
    else:
        # One keyframe-aligned chunk per CPU, each decoded by a single-threaded ffmpeg.
        parts = min(_CHUNKS_PER_WORKER * cpus, ticks // 2) if cpus > 1 else 1
        chunks = split_points(keyframes, ticks, interval, parts)
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
