"""Property-based fuzzing of the decoding entry points: only ``MediaError`` may escape.

Why: the Storage trigger turns any other exception into an ``INTERNAL`` error and a
log line at ERROR severity, which is a bug report, not an answer to the uploader. An
uploader controls every byte, so :func:`sniff`, :func:`decode_image` and
:func:`classify_bytes` must answer arbitrary input with a result or a specific code.

Two kinds of input: raw random bytes (which mostly exercise the sniffer), and valid
seed files mutated by bit flips, byte overwrites, truncation, insertion, deletion and
splices of one format into another (which reach deep into the decoders). Runs are
derandomised, so CI is reproducible; ``MC_FUZZ_SCALE=10`` runs ten times as many
examples with fresh randomness for a local fuzzing session.
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from media_classifier.errors import MediaError
from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Limits, classify_bytes
from media_classifier.media.images import decode_image
from media_classifier.media.sniff import HEAD_BYTES, sniff
from tests.media_factory import heic_bytes
from tests.model_factory import colour_model
from tools.hostile_corpus import tiny_mp4

SCALE = max(1, int(os.environ.get("MC_FUZZ_SCALE", "1")))
FRESH = SCALE > 1
#: Small limits keep every example fast and also exercise the limit checks themselves.
LIMITS = Limits(max_pixels=4_000_000, max_video_seconds=30.0, max_frames=20)


def fuzz_settings(examples: int, deadline_s: float) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=timedelta(seconds=deadline_s),
        derandomize=not FRESH,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@functools.cache
def image_seeds() -> dict[str, bytes]:
    """One small valid file per still-image decoder."""
    base = Image.linear_gradient("L").resize((40, 30)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "jpeg": _encode(base, "JPEG", quality=70, exif=exif.tobytes()),
        "progressive": _encode(base, "JPEG", progressive=True),
        "png": _encode(base, "PNG"),
        "png-palette": _encode(base.convert("P"), "PNG", transparency=0),
        "gif": _encode(base.convert("P"), "GIF"),
        "webp": _encode(base, "WEBP", quality=50),
        "bmp": _encode(base.resize((8, 6)), "BMP"),
        "tiff": _encode(base.resize((8, 6)), "TIFF"),
        "ico": _encode(base.resize((16, 16)), "ICO"),
        "avif": _encode(base, "AVIF", quality=50, exif=exif.tobytes()),
        "heic": heif_seeds()["heic"],
    }


@functools.cache
def heif_seeds() -> dict[str, bytes]:
    """HEIF-family files: libheif and libavif parse boxes an uploader fully controls."""
    base = Image.linear_gradient("L").resize((40, 30)).convert("RGB")
    two = Image.new("RGB", (24, 16), "red")
    return {
        "heic": heic_bytes(base, orientation=6, quality=60),
        "heic-two-images": heic_bytes(two, base, primary=1, quality=60),
        "heic-10bit": heic_bytes(base, bit_depth=10, quality=60),
        "avif": _encode(base, "AVIF", quality=50),
    }


@functools.cache
def animated_seeds() -> dict[str, bytes]:
    """Animations go through the video path (frame sampling), so they get their own seeds."""
    frames = [Image.new("RGB", (16, 12), c) for c in ("red", "green", "blue")]
    return {
        fmt.lower(): _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
        for fmt in ("GIF", "WEBP", "PNG", "AVIF")
    }


@st.composite
def mutated(draw: st.DrawFn, seeds: dict[str, bytes]) -> bytes:
    """A seed file with 1-4 random edits; splices borrow bytes from another seed."""
    names = sorted(seeds)
    data = bytearray(seeds[draw(st.sampled_from(names))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete", "splice"]))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            other = seeds[draw(st.sampled_from(names))]
            start = draw(st.integers(0, len(other) - 1))
            data[pos:] = other[start : start + draw(st.integers(1, len(other)))]
    return bytes(data)


@functools.cache
def _model() -> Model:
    """Built once per process: hypothesis calls the test body many times."""
    directory = Path(tempfile.mkdtemp(prefix="fuzz-model-"))
    return Model.load(colour_model(directory / "colour.onnx"), threads=1)


def check_classify(data: bytes) -> None:
    """The property: a well-formed classification or a MediaError, nothing else."""
    try:
        result = classify_bytes(data, _model(), top_k=2, limits=LIMITS)
    except MediaError as exc:
        assert exc.message
        return
    assert result.kind in ("image", "video")
    assert 1 <= len(result.labels) <= 2
    assert all(0.0 <= entry["score"] <= 1.0 for entry in result.labels)


def check_decode(data: bytes) -> None:
    try:
        img = decode_image(data, max_pixels=LIMITS.max_pixels, target=(32, 32))
    except MediaError:
        return
    assert img.mode == "RGB"
    assert img.width > 0 and img.height > 0


@fuzz_settings(examples=300, deadline_s=1.0)
@given(st.binary(max_size=HEAD_BYTES + 16))
def test_sniff_random_bytes(data: bytes) -> None:
    try:
        media = sniff(data[:HEAD_BYTES])
    except MediaError:
        return
    assert media.kind in ("image", "video")


@fuzz_settings(examples=150, deadline_s=3.0)
@given(st.binary(max_size=2048))
def test_classify_random_bytes(data: bytes) -> None:
    check_classify(data)


@fuzz_settings(examples=200, deadline_s=3.0)
@given(mutated(image_seeds()))
def test_decode_mutated_images(data: bytes) -> None:
    check_decode(data)


@fuzz_settings(examples=150, deadline_s=3.0)
@given(mutated(image_seeds()))
def test_classify_mutated_images(data: bytes) -> None:
    check_classify(data)


@fuzz_settings(examples=200, deadline_s=3.0)
@given(mutated(heif_seeds()))
def test_decode_mutated_heif(data: bytes) -> None:
    check_decode(data)


@pytest.mark.slow
@fuzz_settings(examples=600, deadline_s=10.0)
@given(mutated({**image_seeds(), **animated_seeds(), "mp4": tiny_mp4()}))
def test_classify_mutated_media_slow(data: bytes) -> None:
    """Animations and MP4 too: each example may start ffmpeg, hence ``slow``."""
    check_classify(data)
