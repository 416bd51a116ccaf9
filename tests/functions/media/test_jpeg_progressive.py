"""Progressive JPEGs decoded from their DC scans at 1/8 scale: same pixels, less work."""

from __future__ import annotations

import functools
import io
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from media_classifier.media import jpeg_progressive
from media_classifier.media.images import decode_image, prepare_image
from tests.functions.conftest import encode

LIMIT = 50_000_000


@functools.cache
def _photo(width: int, height: int) -> Image.Image:
    """Texture with detail at every scale (so AC coefficients are far from zero)."""
    rng = np.random.default_rng(width * 7 + height)
    base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC)
    noise = rng.integers(-20, 21, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype("u1"))


def _both_ways(data: bytes, monkeypatch: pytest.MonkeyPatch, **kwargs) -> tuple:
    """(fast path result, original path result, how often reduce() gave a file)."""
    reduced = []
    original = jpeg_progressive.reduce

    def spy(blob: bytes) -> bytes | None:
        out = original(blob)
        reduced.append(out is not None)
        return out

    monkeypatch.setattr(jpeg_progressive, "reduce", spy)
    fast = np.asarray(decode_image(data, max_pixels=LIMIT, **kwargs))
    monkeypatch.setattr(jpeg_progressive, "reduce", lambda blob: None)
    slow = np.asarray(decode_image(data, max_pixels=LIMIT, **kwargs))
    return fast, slow, reduced


@pytest.mark.parametrize(
    ("size", "mode", "options"),
    [
        ((1600, 1200), "RGB", {"subsampling": 2}),  # 4:2:0, the common case
        ((1600, 1200), "RGB", {"subsampling": 1}),  # 4:2:2
        ((1600, 1200), "RGB", {"subsampling": 0}),  # 4:4:4
        ((2403, 1597), "RGB", {"subsampling": 2}),  # edges not on a block boundary
        ((1600, 1200), "L", {}),  # greyscale
        ((1600, 1200), "CMYK", {}),  # four components, Adobe marker
        ((1600, 1200), "RGB", {"subsampling": 2, "restart_marker_blocks": 7}),
        ((1600, 1200), "RGB", {"subsampling": 2, "quality": 100}),
    ],
    ids=["420", "422", "444", "odd-size", "grey", "cmyk", "restart-markers", "q100"],
)
def test_same_pixels_as_decoding_the_whole_file(
    size: tuple[int, int], mode: str, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode(_photo(*size).convert(mode), "JPEG", progressive=True, **options)
    fast, slow, reduced = _both_ways(data, monkeypatch, target=(120, 120), policy="center_crop")
    assert reduced == [True]  # the fast path was taken ...
    assert fast.shape == slow.shape
    assert np.array_equal(fast, slow)  # ... and gave exactly the same pixels


def test_exif_orientation_survives_the_rewrite(monkeypatch: pytest.MonkeyPatch) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(_photo(1600, 1200), "JPEG", progressive=True, exif=exif.tobytes())
    fast, slow, reduced = _both_ways(data, monkeypatch, target=(120, 120), policy="squash")
    assert reduced == [True]
    assert fast.shape == slow.shape == (200, 150, 3)  # turned upright
    assert np.array_equal(fast, slow)


def test_most_of_the_file_is_left_out() -> None:
    data = encode(_photo(1600, 1200), "JPEG", progressive=True, subsampling=2)
    reduced = jpeg_progressive.reduce(data)
    assert reduced is not None and len(reduced) < len(data) / 2


@pytest.mark.parametrize(
    ("make", "target"),
    [
        (lambda: encode(_photo(1600, 1200), "JPEG", progressive=True), (400, 400)),  # 1/2
        (lambda: encode(_photo(1600, 1200), "JPEG"), (120, 120)),  # baseline
    ],
    ids=["scale-half", "baseline"],
)
def test_not_used_where_it_does_not_apply(make, target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jpeg_progressive, "reduce", lambda blob: pytest.fail("called"))
    decode_image(make(), max_pixels=LIMIT, target=target, policy="squash")


def _progressive() -> bytes:
    return encode(_photo(800, 600), "JPEG", progressive=True)


def _first_scan_only(data: bytes) -> bytes:
    """The file cut after its first scan (DC only), properly ended: AC never sent."""
    second = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    cut = data.rfind(b"\xff\xc4", 0, second)  # the table segment before the second scan
    return data[:cut] + b"\xff\xd9"


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(_photo(800, 600), "JPEG"),  # baseline: nothing to leave out
        lambda: _progressive()[:-2],  # no end marker (truncated)
        lambda: _progressive()[: len(_progressive()) // 2],
        lambda: _first_scan_only(_progressive()),  # AC incomplete: libjpeg smooths it
        lambda: b"\xff\xd8\xff\xc2\x00\x02\xff\xd9",  # a frame header with no body
        lambda: b"not a jpeg",
        lambda: b"",
    ],
    ids=["baseline", "no-eoi", "half", "dc-only", "empty-sof", "garbage", "empty"],
)
def test_reduce_declines_what_it_cannot_do_exactly(make) -> None:
    assert jpeg_progressive.reduce(make()) is None


def test_a_file_cut_after_its_dc_scan_decodes_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _first_scan_only(encode(_photo(1600, 1200), "JPEG", progressive=True))
    fast, slow, reduced = _both_ways(data, monkeypatch, target=(120, 120), policy="squash")
    assert reduced == [False] and np.array_equal(fast, slow)


@functools.cache
def _seeds() -> list[bytes]:
    img = _photo(96, 64)
    return [
        encode(img, "JPEG", progressive=True, subsampling=s, quality=q)
        for s, q in ((0, 60), (2, 90))
    ] + [encode(img.convert("L"), "JPEG", progressive=True)]


@settings(
    max_examples=300,
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.data())
def test_reduce_never_raises_on_mutated_files(data: st.DataObject) -> None:
    blob = bytearray(data.draw(st.sampled_from(_seeds())))
    for _ in range(data.draw(st.integers(1, 4))):
        if len(blob) < 3:
            break
        pos = data.draw(st.integers(0, len(blob) - 1))
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if op == "flip":
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "truncate":
            del blob[max(pos, 2) :]
        elif op == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            del blob[pos : pos + data.draw(st.integers(1, 16))]
    out = jpeg_progressive.reduce(bytes(blob))
    if out is not None:  # whatever it wrote, Pillow reads it or raises, as for any upload
        try:
            img = Image.open(io.BytesIO(out))
            img.draft("RGB", (12, 8))
            img.load()
        except (OSError, SyntaxError, ValueError):
            pass


def test_prepare_image_uses_it_for_a_phone_sized_progressive_photo() -> None:
    data = encode(_photo(4000, 3000), "JPEG", progressive=True, quality=85)
    array = prepare_image(data, (224, 224), "center_crop", max_pixels=LIMIT)
    assert array.shape == (224, 224, 3)
