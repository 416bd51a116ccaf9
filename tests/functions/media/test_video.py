"""Video probing and frame sampling against videos generated with the bundled ffmpeg.

Frame-counter videos (see ``tests/media_factory.py``) show their frame number,
so these tests check *which* source frame the sampler returned for each
timestamp, not only how many frames came back.
"""

from __future__ import annotations

import subprocess
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.media import video
from media_classifier.media.images import fit_to_model
from media_classifier.media.video import decode as video_decode
from media_classifier.media.video import plan as video_plan
from media_classifier.media.video import probe as video_probe
from tests import media_factory as mf

REPO = Path(__file__).resolve().parents[3]
BBB = REPO / "samples" / "video" / "big_buck_bunny_4s.mp4"
SIZE = (224, 224)


def sample(path: Path, *, size=SIZE, policy="squash", every_sec=1.0, max_frames=100, **kw):
    info = video.probe_video(str(path))
    return list(
        video.sample_frames(
            str(path),
            info,
            size=size,
            policy=policy,
            every_sec=every_sec,
            max_frames=max_frames,
            **kw,
        )
    )


def numbers(frames) -> list[int]:
    return [mf.frame_number(f) for _, f in frames]


# --- probe ---------------------------------------------------------------------------


def test_probe_testsrc_mp4(tmp_path: Path) -> None:
    path = mf.testsrc_video(tmp_path / "t.mp4", duration=3, size=(320, 240), fps=25)
    info = video.probe_video(str(path))
    assert info == video.VideoInfo(
        duration_sec=3.0,
        width=320,
        height=240,
        fps=25.0,
        rotation=0,
        codec="h264",
        has_audio=False,
    )


@pytest.mark.parametrize(
    ("name", "codec", "expected_codec"),
    [
        ("vp9.webm", None, "vp9"),
        ("vp8.webm", ["-c:v", "libvpx", "-deadline", "realtime"], "vp8"),
        ("h264.mkv", None, "h264"),
        ("mpeg4.avi", None, "mpeg4"),
        ("mpeg2.mpg", None, "mpeg2video"),
        ("h264.ts", None, "h264"),
        ("h264.flv", None, "h264"),
        ("theora.ogv", None, "theora"),
        ("hevc.mp4", ["-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=0"], "hevc"),
    ],
)
def test_containers_probe_and_sample(tmp_path: Path, name, codec, expected_codec) -> None:
    path = mf.testsrc_video(tmp_path / name, duration=2, size=(160, 120), codec=codec, audio=True)
    info = video.probe_video(str(path))
    assert info.codec == expected_codec
    assert (info.width, info.height) == (160, 120)
    assert info.has_audio
    assert info.duration_sec == pytest.approx(2.0, abs=0.1)
    frames = sample(path, size=(32, 48))
    # 2.0 s nominal; AVI's and MPEG's muxers may keep one more picture (at 2.0 s).
    assert [t for t, _ in frames][:2] == [0.0, 1.0] and len(frames) <= 3
    for _, frame in frames:
        assert frame.shape == (32, 48, 3) and frame.dtype == np.uint8
        assert frame.std() > 20  # testsrc2's colour bars, not a blank frame


def test_probe_header_without_duration_scans_packets(tmp_path: Path) -> None:
    """WebM written to a pipe (like a browser's MediaRecorder) has no duration in its header."""
    path = tmp_path / "streamed.webm"
    src = "testsrc2=size=160x120:rate=30:duration=3"
    cmd = [mf.ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", src]
    cmd += ["-c:v", "libvpx", "-deadline", "realtime", "-f", "webm", "pipe:1"]
    path.write_bytes(subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout)
    header = subprocess.run(
        [mf.ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, timeout=30
    ).stderr.decode()
    assert "Duration: N/A" in header  # the case this test is about
    info = video.probe_video(str(path))
    assert info.duration_sec == pytest.approx(3.0, abs=0.05)
    assert len(sample(path, size=(16, 16))) == 3


@pytest.mark.parametrize(
    ("name", "cover_art"), [("a.m4a", False), ("a.wav", False), ("cover.mp3", True)]
)
def test_audio_only_is_unsupported(tmp_path: Path, name, cover_art) -> None:
    path = mf.audio_only(tmp_path / name, cover_art=cover_art)
    with pytest.raises(MediaError) as err:
        video.probe_video(str(path))
    assert err.value.code == ErrorCode.UNSUPPORTED_MEDIA


@pytest.mark.parametrize("content", [b"", b"\x00" * 1000, b"not a video at all\n" * 50])
def test_garbage_is_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as err:
        video.probe_video(str(path))
    assert err.value.code == ErrorCode.CORRUPT_MEDIA


def test_playlists_are_refused_not_followed(tmp_path: Path) -> None:
    """A crafted HLS playlist must not make ffmpeg read other local files."""
    secret = mf.testsrc_video(tmp_path / "secret.mp4", duration=1, size=(64, 64))
    playlist = tmp_path / "evil.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{secret}\n#EXT-X-ENDLIST\n")
    with pytest.raises(MediaError) as err:
        video.probe_video(str(playlist))
    assert err.value.code in (ErrorCode.CORRUPT_MEDIA, ErrorCode.UNSUPPORTED_MEDIA)


def test_probe_is_bounded_by_a_timeout(tmp_path: Path) -> None:
    path = mf.testsrc_video(tmp_path / "t.mp4", duration=1, size=(64, 64))
    with pytest.raises(MediaError) as err:
        video.probe_video(str(path), timeout=1e-4)
    assert err.value.code == ErrorCode.CORRUPT_MEDIA


# --- parse_probe on ffmpeg's text (pure) ---------------------------------------------

HEADER = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/x.mp4':
  Metadata:
    major_brand     : isom
  Duration: 00:01:02.50, start: 0.000000, bitrate: 815 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), \
1920x1080 [SAR 1:1 DAR 16:9], 782 kb/s, 29.97 fps, 30 tbr, 15360 tbn (default)
    Metadata:
      handler_name    : VideoHandler
{side}
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp
At least one output file must be specified
"""


@pytest.mark.parametrize(
    ("side", "rotation", "size"),
    [
        ("", 0, (1920, 1080)),
        ("    Side data:\n      Display Matrix: rotation of -90.00 degrees", 90, (1080, 1920)),
        ("    Side data:\n      displaymatrix: rotation of 90.00 degrees", 270, (1080, 1920)),
        ("    Side data:\n      Display Matrix: rotation of -180.00 degrees", 180, (1920, 1080)),
        ("      rotate          : 90", 90, (1080, 1920)),  # legacy tag, clockwise
    ],
)
def test_parse_probe_rotation(side: str, rotation: int, size) -> None:
    info = video.parse_probe(HEADER.replace("{side}", side))
    assert info is not None
    assert info.rotation == rotation
    assert (info.width, info.height) == size
    assert info.duration_sec == pytest.approx(62.5)
    assert info.fps == pytest.approx(29.97)
    assert info.has_audio


def test_parse_probe_applies_non_square_pixels() -> None:
    text = HEADER.replace("{side}", "").replace(
        "1920x1080 [SAR 1:1 DAR 16:9]", "720x576 [SAR 64:45 DAR 16:9]"
    )
    info = video.parse_probe(text)
    assert info is not None and (info.width, info.height) == (1024, 576)


def test_parse_probe_ignores_cover_art() -> None:
    text = HEADER.replace("{side}", "").replace("(default)\n", "(attached pic)\n", 1)
    assert video.parse_probe(text) is None


# --- sampling: counts, timestamps, content -------------------------------------------


def test_testsrc_frame_count_timestamps_and_shape(tmp_path: Path) -> None:
    path = mf.testsrc_video(tmp_path / "t.mp4", duration=5, size=(320, 240))
    frames = sample(path)
    assert [t for t, _ in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(f.shape == (224, 224, 3) and f.dtype == np.uint8 for _, f in frames)
    half = sample(path, every_sec=0.5, size=(8, 8))
    assert [t for t, _ in half] == [i * 0.5 for i in range(10)]


def test_full_decode_returns_the_frame_on_screen_at_each_tick(tmp_path: Path) -> None:
    """Sparse keyframes (x264's default GOP of 250) -> full decode path: exact frames.

    Frame k/30 s is shown at tick k; non-reference frames are skipped, so the
    sampler may return an earlier frame, never a later one, and never more
    than a few frames earlier.
    """
    path = mf.frame_counter_video(tmp_path / "c.mp4", duration=6, fps=30)
    frames = sample(path, size=(16, 16))
    assert [t for t, _ in frames] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for (t, _), n in zip(frames, numbers(frames), strict=True):
        assert 0 <= t * 30 - n <= 3, (t, n)


def test_dense_keyframes_take_the_keyframe_path_within_tolerance(tmp_path: Path) -> None:
    path = mf.frame_counter_video(tmp_path / "g.mp4", duration=6, fps=30, gop=15)
    keyframes, _ = video_probe.scan_packets(str(path), timeout=10)
    assert video_plan.keyframes_cover(keyframes, 6, 1.0)  # precondition: the fast path is taken
    frames = sample(path, size=(16, 16))
    assert [t for t, _ in frames] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for (t, _), n in zip(frames, numbers(frames), strict=True):
        assert abs(n / 30 - t) <= 0.5, (t, n)
        assert n % 15 == 0  # a keyframe


def test_parallel_chunks_give_the_same_frames_as_one_decoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyframes every 2 s: four chunks through a pool of two decoders, frames in order."""
    path = mf.frame_counter_video(tmp_path / "g60.mp4", duration=8, fps=30, gop=60)
    keyframes, _ = video_probe.scan_packets(str(path), timeout=10)
    assert video_plan.split_points(keyframes, 16, 0.5, 2) == [(0, 0.0), (8, 4.0)]
    one = sample(path, size=(16, 16), every_sec=0.5, workers=1)
    spy = _PopenSpy(monkeypatch)
    monkeypatch.setattr(video_decode, "_CHUNKS_PER_WORKER", 2)  # more chunks than decoders
    two = sample(path, size=(16, 16), every_sec=0.5, workers=2)
    assert len(spy.procs) == 4  # one per 2-s GOP, at most two at a time
    spy.assert_all_reaped()
    assert [t for t, _ in two] == [t for t, _ in one] == [i * 0.5 for i in range(16)]
    assert numbers(two) == numbers(one)
    for (t, _), n in zip(two, numbers(two), strict=True):
        assert 0 <= t * 30 - n <= 3


def test_vfr_samples_by_time_not_by_frame_count(tmp_path: Path) -> None:
    """Frame 29 stays on screen from 0.97 s to 3.0 s; a frame-count sampler would say 30, 60."""
    path = mf.vfr_video(tmp_path / "vfr.mp4")
    frames = sample(path, size=(16, 16))
    shown_from = [n / 30 if n < 30 else 3 + (n - 30) / 10 for n in range(60)]
    got = numbers(frames)
    assert got[:3] == [0, 29, 29]
    for (t, _), n in zip(frames, got, strict=True):
        on_screen = max(i for i, start in enumerate(shown_from) if start <= t + 1e-6)
        assert 0 <= on_screen - n <= 3, (t, n)  # noref skipping may give a slightly older one


@pytest.mark.parametrize(
    ("rotation", "red_corner"),
    [(90, "top_right"), (270, "bottom_left"), (180, "bottom_right"), (0, "top_left")],
)
def test_rotated_phone_video_is_upright(tmp_path: Path, rotation: int, red_corner: str) -> None:
    """Stored landscape with a red top-left block; displayed rotated like a phone video."""
    path = mf.rotated_video(tmp_path / "phone.mp4", rotation=rotation, size=(320, 180))
    info = video.probe_video(str(path))
    assert info.rotation == rotation
    portrait = rotation in (90, 270)
    assert (info.width, info.height) == ((180, 320) if portrait else (320, 180))
    size = (64, 36) if portrait else (36, 64)  # keep the display aspect so corners stay corners
    (_, frame), *_ = sample(path, size=size)
    h, w = size
    corners = {
        "top_left": frame[: h // 8, : w // 8],
        "top_right": frame[: h // 8, -w // 8 :],
        "bottom_left": frame[-h // 8 :, : w // 8],
        "bottom_right": frame[-h // 8 :, -w // 8 :],
    }
    for corner, pixels in corners.items():
        red = pixels[..., 0].mean() > 150 and pixels[..., 2].mean() < 100
        assert red == (corner == red_corner), corner


def test_center_crop_and_squash_match_the_image_path(tmp_path: Path) -> None:
    """ffmpeg's crop+scale gives (nearly) what images.fit_to_model gives on the full frame."""
    path = mf.testsrc_video(tmp_path / "t.mp4", duration=1, size=(640, 360), fps=10)
    full = tmp_path / "first.png"
    mf.ffmpeg("-i", str(path), "-frames:v", "1", str(full))
    img = Image.open(full).convert("RGB")
    for policy in ("center_crop", "squash"):
        (_, frame), *_ = sample(path, policy=policy)
        expected = fit_to_model(img, SIZE, policy)
        diff = np.abs(frame.astype(int) - expected.astype(int)).mean()
        assert diff < 6, (policy, diff)


def test_big_buck_bunny_clip() -> None:
    info = video.probe_video(str(BBB))
    assert (info.width, info.height, info.codec, info.fps) == (640, 360, "h264", 25.0)
    assert info.has_audio and info.duration_sec == pytest.approx(4.0, abs=0.05)
    frames = sample(BBB, policy="center_crop")
    assert [t for t, _ in frames] == [0.0, 1.0, 2.0, 3.0]
    means = [f.reshape(-1, 3).mean(axis=0) for _, f in frames]
    assert all(m[1] > m[2] for m in means)  # a green hill, not a blank or broken frame


# --- limits: max_frames, truncation, timeouts, process hygiene --------------------------


def test_max_frames_spreads_frames_over_the_whole_video(tmp_path: Path) -> None:
    path = mf.frame_counter_video(tmp_path / "c.mp4", duration=10, fps=10)
    assert video.sampling_interval(10.0, 1.0, 4) == 2.5
    frames = sample(path, size=(8, 8), max_frames=4)
    assert [t for t, _ in frames] == [0.0, 2.5, 5.0, 7.5]
    for (t, _), n in zip(frames, numbers(frames), strict=True):
        assert 0 <= t * 10 - n <= 2
    assert len(sample(path, size=(8, 8), max_frames=1)) == 1


def test_sampling_interval_without_a_cap_is_every_sec() -> None:
    assert video.sampling_interval(60.0, 1.0, 300) == 1.0
    assert video.sampling_interval(0.0, 2.0, 10) == 2.0  # unknown duration
    with pytest.raises(ValueError):
        video.sampling_interval(10.0, 0.0, 10)


def test_truncated_mp4_without_index_is_corrupt(tmp_path: Path) -> None:
    """Default MP4s keep their index (moov) at the end: an interrupted upload loses it."""
    full = mf.testsrc_video(tmp_path / "full.mp4", duration=4, size=(160, 120))
    cut = mf.truncated_copy(full, tmp_path / "cut.mp4", keep=0.5)
    with pytest.raises(MediaError) as err:
        video.probe_video(str(cut))
    assert err.value.code == ErrorCode.CORRUPT_MEDIA


def test_truncated_faststart_mp4_yields_what_decodes(tmp_path: Path) -> None:
    full = mf.frame_counter_video(tmp_path / "full.mp4", duration=8, fps=30, size=(160, 120))
    fast = tmp_path / "fast.mp4"
    mf.ffmpeg("-i", str(full), "-c", "copy", "-movflags", "+faststart", str(fast))
    cut = mf.truncated_copy(fast, tmp_path / "cut.mp4", keep=0.5)
    info = video.probe_video(str(cut))  # the header is intact and still says 8 s
    assert info.duration_sec == pytest.approx(8.0, abs=0.1)
    frames = sample(cut, size=(16, 16))
    assert 1 <= len(frames) < 8
    for (t, _), n in zip(frames, numbers(frames), strict=True):
        assert 0 <= t * 30 - n <= 3


def test_truncated_mkv_yields_what_decodes(tmp_path: Path) -> None:
    full = mf.frame_counter_video(tmp_path / "full.mkv", duration=8, fps=30, size=(160, 120))
    cut = mf.truncated_copy(full, tmp_path / "cut.mkv", keep=0.5)
    frames = sample(cut, size=(16, 16))
    assert 1 <= len(frames) < 8


def test_nothing_decodable_is_corrupt(tmp_path: Path) -> None:
    full = mf.testsrc_video(tmp_path / "full.mp4", duration=2, size=(160, 120))
    fast = tmp_path / "fast.mp4"
    mf.ffmpeg("-i", str(full), "-c", "copy", "-movflags", "+faststart", str(fast))
    data = bytearray(fast.read_bytes())
    mdat = data.find(b"mdat")
    data[mdat + 4 :] = b"\x00" * (len(data) - mdat - 4)  # header intact, no picture data
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    with pytest.raises(MediaError) as err:
        sample(broken)
    assert err.value.code == ErrorCode.CORRUPT_MEDIA


class _PopenSpy:
    """Records the ffmpeg processes the sampler starts (real processes, nothing faked)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.procs: list[subprocess.Popen] = []
        real = subprocess.Popen

        def spy(args, *rest, **kwargs):
            proc = real(args, *rest, **kwargs)
            if "rawvideo" in args:  # the decoders, not the probe/scan runs
                self.procs.append(proc)
            return proc

        monkeypatch.setattr(video_decode.subprocess, "Popen", spy)

    def assert_all_reaped(self) -> None:
        assert self.procs
        for proc in self.procs:
            assert proc.returncode is not None  # waited for: no zombie, no orphan


def test_closing_the_generator_kills_ffmpeg(tmp_path: Path, monkeypatch) -> None:
    path = mf.frame_counter_video(tmp_path / "c.mp4", duration=20, fps=30, gop=60)
    spy = _PopenSpy(monkeypatch)
    info = video.probe_video(str(path))
    gen = video.sample_frames(
        str(path), info, size=SIZE, policy="squash", max_frames=100, workers=2
    )
    threads_before = threading.active_count()
    next(gen)
    deadline = time.monotonic() + 10
    while len(spy.procs) < 2 and time.monotonic() < deadline:  # chunk 1 starts in a thread
        time.sleep(0.01)
    assert len(spy.procs) == 2
    # Chunk 0's decoder owes 9 more frames of 150 KB to a pipe of 64 KB nobody reads: it is
    # blocked, so only closing can end it (chunk 1's may already have finished into its queue).
    assert spy.procs[0].poll() is None
    gen.close()
    spy.assert_all_reaped()
    deadline = time.monotonic() + 10
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() <= threads_before  # reader threads ended too


def test_memory_does_not_grow_with_the_number_of_frames(tmp_path: Path) -> None:
    """200 frames of 150 KB pass through; the sampler holds a bounded few at a time."""
    path = mf.frame_counter_video(tmp_path / "c.mp4", duration=20, fps=30, gop=30)
    info = video.probe_video(str(path))
    tracemalloc.start()
    try:
        count = 0
        for _ in video.sample_frames(
            str(path), info, size=SIZE, policy="squash", every_sec=0.1, max_frames=1000
        ):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200
    assert peak < 12 * 1024 * 1024, peak  # 200 frames would be 30 MB


def test_consumer_exception_kills_ffmpeg(tmp_path: Path, monkeypatch) -> None:
    path = mf.frame_counter_video(tmp_path / "c.mp4", duration=20, fps=30)
    spy = _PopenSpy(monkeypatch)
    info = video.probe_video(str(path))

    def consume() -> None:
        for _ in video.sample_frames(str(path), info, size=SIZE, policy="squash", max_frames=50):
            raise RuntimeError("inference failed")

    with pytest.raises(RuntimeError):
        consume()
    spy.assert_all_reaped()


def test_decoding_timeout_kills_ffmpeg_and_reports_it(tmp_path: Path, monkeypatch) -> None:
    path = mf.frame_counter_video(tmp_path / "c.mp4", duration=20, fps=30)
    spy = _PopenSpy(monkeypatch)
    info = video.probe_video(str(path))
    gen = video.sample_frames(
        str(path), info, size=(16, 16), policy="squash", max_frames=50, timeout=0.3
    )
    with pytest.raises(MediaError) as err:
        for _ in gen:
            time.sleep(0.6)  # a slow consumer: the deadline passes while ffmpeg waits on it
    assert err.value.code == ErrorCode.TIMEOUT
    spy.assert_all_reaped()


# --- animated GIF / WebP ---------------------------------------------------------------

# Frames start at 0, 0.4, 1.1, 2.1, 2.4 s; 3.0 s in all.
DURATIONS = [400, 700, 1000, 300, 600]


@pytest.mark.parametrize("builder", [mf.animated_gif, mf.animated_webp])
def test_animation_probe_and_sample(tmp_path: Path, builder) -> None:
    path = builder(tmp_path / "anim", DURATIONS, size=(64, 48))
    with Image.open(path) as img:
        info = video.probe_animation(img)
        assert info.duration_sec == pytest.approx(3.0)
        assert (info.width, info.height, info.rotation, info.has_audio) == (64, 48, 0, False)
        assert info.codec == img.format.lower()
        assert info.fps == pytest.approx(5 / 3, abs=0.01)
        frames = list(video.sample_animation(img, size=(20, 30), policy="squash", max_frames=50))
        assert [t for t, _ in frames] == [0.0, 1.0, 2.0]
        assert [mf.dominant_palette_index(f) for _, f in frames] == [0, 1, 2]
        assert all(f.shape == (20, 30, 3) and f.dtype == np.uint8 for _, f in frames)
        half = list(
            video.sample_animation(
                img, size=(8, 8), policy="center_crop", every_sec=0.5, max_frames=50
            )
        )
        assert [mf.dominant_palette_index(f) for _, f in half] == [0, 1, 1, 2, 2, 4]
        capped = list(video.sample_animation(img, size=(8, 8), policy="squash", max_frames=2))
        assert [t for t, _ in capped] == [0.0, 1.5]


def test_gif_zero_delays_play_at_browser_speed(tmp_path: Path) -> None:
    path = mf.animated_gif(tmp_path / "fast.gif", [0, 0, 0, 0])
    with Image.open(path) as img:
        assert video.probe_animation(img).duration_sec == pytest.approx(0.4)


def test_gif_transparency_is_composited_on_white(tmp_path: Path) -> None:
    path = mf.animated_gif(tmp_path / "t.gif", [500, 500], size=(64, 64), transparent=True)
    with Image.open(path) as img:
        (_, frame), *_ = video.sample_animation(img, size=(64, 64), policy="squash", max_frames=5)
    assert frame[:8, :8].min() > 240  # the transparent corner
    assert tuple(frame[40, 40]) == pytest.approx(mf.PALETTE[0], abs=12)


def test_animated_png_is_an_animation_too(tmp_path: Path) -> None:
    frames = mf.animation_frames(len(DURATIONS))
    path = tmp_path / "a.png"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0)
    with Image.open(path) as img:
        assert video.probe_animation(img).duration_sec == pytest.approx(3.0)
        got = video.sample_animation(img, size=(8, 8), policy="squash", max_frames=50)
        assert [mf.dominant_palette_index(f) for _, f in got] == [0, 1, 2]


def test_truncated_gif_is_corrupt(tmp_path: Path) -> None:
    """Unlike a video, an animation with a cut frame is not analysed in part."""
    path = mf.animated_gif(tmp_path / "a.gif", DURATIONS, size=(64, 48))
    cut = mf.truncated_copy(path, tmp_path / "cut.gif", keep=0.6)
    with Image.open(cut) as img, pytest.raises(MediaError) as err:
        video.probe_animation(img)
        list(video.sample_animation(img, size=(8, 8), policy="squash", max_frames=50))
    assert err.value.code == ErrorCode.CORRUPT_MEDIA
