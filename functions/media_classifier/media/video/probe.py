"""What a video file holds (duration, display size, rotation, keyframes), read without decoding."""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.media.video.ffmpeg import input_args, run_ffmpeg

PROBE_TIMEOUT_SEC = 20.0


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


def scan_packets(path: str, *, timeout: float) -> tuple[list[float], float]:
    """Presentation times of the video's keyframes, and the stream's end time.

    Demuxing only (``-c copy`` to ``framecrc``, whose lines carry each packet's
    pts and a flag for non-key packets), no decoding: ~70 ms for a 60 s 720p
    MP4. Used to choose the decode strategy and for files whose header has no
    duration (WebM recorded by browsers' MediaRecorder). Not ``-discard
    nokey``: with B-frames the MP4 demuxer then reports the wrong pts.
    """
    args = ["-loglevel", "error", *input_args(path)]
    args += ["-map", "0:V:0", "-c", "copy", "-f", "framecrc", "pipe:1"]
    proc = run_ffmpeg(args, timeout)
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
    proc = run_ffmpeg(["-loglevel", "info", *input_args(path)], timeout)
    text = proc.stderr.decode("utf-8", "replace")
    info = parse_probe(text)
    if info is None:
        raise MediaError(ErrorCode.UNSUPPORTED_MEDIA, "the file has no video stream")
    if info.duration_sec <= 0:
        _, end = scan_packets(path, timeout=timeout)
        if end <= 0:
            raise MediaError(ErrorCode.CORRUPT_MEDIA, "the video stream has no packets")
        info = dataclasses.replace(info, duration_sec=end)
    return info
