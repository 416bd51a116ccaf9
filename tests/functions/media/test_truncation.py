"""Images whose data ends before their picture does are CORRUPT_MEDIA, in every format.

The rule is one (README, "Truncated images"); the checks behind it differ per decoder
(``media_classifier/media/truncation.py``). What matters most here is both directions: every
kind of short file is refused, and no complete file is, however much its last pixel
looks like a decoder's fill.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from PIL import Image

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Limits, classify_bytes
from media_classifier.media import png_fast, truncation
from media_classifier.media.images import decode_image, load_rgb, open_image
from tests.functions.conftest import encode
from tests.model_factory import colour_model
from tools.hostile_corpus import (
    PNG_SIGNATURE,
    _chunk,
    gif_frame_claiming,
    heic_claiming_twice_its_size,
    heic_still,
    jpeg_claiming,
    jpeg_cut_with_end_marker,
    png_missing_rows,
)

TARGET = (224, 224)


def outcome(data: bytes, target: tuple[int, int] | None = TARGET) -> str:
    try:
        decode_image(data, max_pixels=50_000_000, target=target, policy="center_crop")
    except MediaError as exc:
        return str(exc.code)
    return "done"


def photo(size: tuple[int, int] = (160, 120), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size[0])[None, :, None]
    pixels = (ramp + rng.normal(0, 30, (size[1], size[0], 3))).clip(0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def with_grey_corner(img: Image.Image, value: int = 128) -> Image.Image:
    """A complete picture whose bottom-right quarter is exactly libjpeg's fill grey."""
    out = img.copy()
    out.paste((value, value, value), (img.width // 2, img.height // 2, img.width, img.height))
    return out


# --- JPEG ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [TARGET, None])
@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_header_claiming_more_than_the_data_holds(
    progressive: bool, target: tuple[int, int] | None
) -> None:
    """The reported case: 7000x7000 declared, 64x64 of data: grey, labelled, 'done'."""
    with pytest.raises(MediaError) as info:
        decode_image(jpeg_claiming(7_000, 7_000, progressive=progressive), max_pixels=50_000_000,
                     target=target, policy="center_crop")  # fmt: skip
    assert info.value.code == ErrorCode.CORRUPT_MEDIA
    assert "7000x7000" in info.value.message and "ends before its picture" in info.value.message


@pytest.mark.parametrize(
    "save",
    [
        {},
        {"subsampling": 0},
        {"subsampling": 1},
        {"restart_marker_blocks": 4},
        {"optimize": True},
    ],
    ids=["420", "444", "422", "restart-markers", "optimized-huffman"],
)
@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_a_cut_jpeg_with_an_end_marker_put_back(save: dict, keep: float) -> None:
    assert outcome(jpeg_cut_with_end_marker(keep, **save)) == "CORRUPT_MEDIA"


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_cut_greyscale_and_cmyk_jpegs(mode: str) -> None:
    data = encode(photo().convert(mode), "JPEG", quality=85)
    assert outcome(data) == "done"
    assert outcome(data[: len(data) // 2] + b"\xff\xd9") == "CORRUPT_MEDIA"


def test_a_64x64_jpeg_claiming_128x128_is_caught_by_the_second_decode() -> None:
    """Too little missing for the lower bound to see: the re-decode without markers does."""
    data = jpeg_claiming(128, 128)
    layout = truncation.jpeg_layout(data)
    assert truncation.jpeg_shortfall(data, layout) is None
    assert truncation.jpeg_cut_short(data, layout, None)
    assert outcome(data) == "CORRUPT_MEDIA"


def test_a_progressive_jpeg_missing_only_refinement_scans_covers_every_pixel() -> None:
    """All DC scans arrived, so every pixel is there, if less sharp: it is classified."""
    data = encode(photo((320, 240)), "JPEG", quality=90, progressive=True)
    layout = truncation.jpeg_layout(data)
    assert layout is not None and layout.coding == "progressive"
    last_dc = max(i for i, scan in enumerate(layout.scans) if scan.spectral_start == 0)
    cut = layout.scans[last_dc + 1].data_end  # the first AC scan, then the end marker
    assert outcome(data[:cut] + b"\xff\xd9") == "done"


def test_a_progressive_jpeg_whose_dc_scan_holds_less_than_a_bit_per_block() -> None:
    data = encode(photo((640, 480)), "JPEG", quality=90, progressive=True)
    layout = truncation.jpeg_layout(data)
    assert layout is not None
    first = layout.scans[0]
    cut = first.data_start + 64  # 4,800 blocks need 600 bytes at the very least
    assert outcome(data[:cut] + b"\xff\xd9") == "CORRUPT_MEDIA"


def test_a_colour_component_that_is_never_sent() -> None:
    layout = truncation.JpegLayout(
        coding="progressive",
        width=64,
        height=64,
        components=((1, 2, 2), (2, 1, 1), (3, 1, 1)),
        scans=(truncation.JpegScan((1,), 0, 0, 0, 10_000),),
    )
    reason = truncation.jpeg_shortfall(b"\x00" * 10_000, layout)
    assert reason is not None and "2 of its 3 colour components" in reason


@pytest.mark.parametrize(
    ("image", "save"),
    [
        (with_grey_corner(photo()), {}),
        (with_grey_corner(photo()), {"restart_marker_blocks": 2}),
        (with_grey_corner(photo()), {"subsampling": 0}),
        (with_grey_corner(photo((17, 9))), {}),
        (Image.new("RGB", (640, 480), (128, 128, 128)), {}),
        (Image.new("L", (64, 64), 128), {}),
        (Image.new("RGB", (1, 1), (128, 128, 128)), {}),
        (with_grey_corner(photo()).convert("CMYK"), {}),
        (with_grey_corner(photo(), 127), {}),
    ],
    ids=["corner", "restarts", "444", "17x9", "flat-grey", "grey-L", "1x1", "cmyk", "127"],
)
@pytest.mark.parametrize("target", [TARGET, (16, 16), None])
def test_complete_jpegs_ending_in_the_fill_grey_are_classified(
    image: Image.Image, save: dict, target: tuple[int, int] | None
) -> None:
    """No false alarm: a complete file whose last pixel is exactly libjpeg's grey."""
    data = encode(image, "JPEG", quality=95, **save)
    assert outcome(data, target) == "done"
    layout = truncation.jpeg_layout(data)
    assert truncation.jpeg_shortfall(data, layout) is None


def test_trailing_data_after_the_end_marker_changes_nothing() -> None:
    data = encode(with_grey_corner(photo()), "JPEG", quality=90)
    assert outcome(data + b"PK\x03\x04" + b"\xff" * 100) == "done"


@hyp_settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(
    width=st.integers(8, 300),
    height=st.integers(8, 300),
    quality=st.integers(30, 98),
    subsampling=st.sampled_from([0, 1, 2]),
    progressive=st.booleans(),
    keep=st.floats(0.05, 0.85),
)
def test_any_jpeg_is_complete_and_any_cut_with_an_end_marker_is_refused(
    width: int, height: int, quality: int, subsampling: int, progressive: bool, keep: float
) -> None:
    img = with_grey_corner(photo((width, height), seed=width * height))
    data = encode(img, "JPEG", quality=quality, subsampling=subsampling, progressive=progressive)
    assert outcome(data) == "done"
    layout = truncation.jpeg_layout(data)
    assert layout is not None and truncation.jpeg_shortfall(data, layout) is None
    if progressive:
        return  # a cut in a refinement scan leaves every pixel (tested above)
    scan = layout.scans[0]
    cut = scan.data_start + int((scan.data_end - scan.data_start) * keep)
    if scan.data_end - cut >= 64:  # more than the 8 bytes the second decode appends can fill
        assert outcome(data[:cut] + b"\xff\xd9") == "CORRUPT_MEDIA"


def test_the_checks_cost_nothing_for_an_ordinary_photo(monkeypatch: pytest.MonkeyPatch) -> None:
    """A baseline photo whose last pixel is not the fill grey is not walked or decoded twice."""

    def refuse(*args: object) -> None:
        raise AssertionError("not needed for this photo")

    data = encode(photo((1200, 900)), "JPEG", quality=90)
    assert len(data) > truncation.SMALL_FILE_BYTES
    monkeypatch.setattr(truncation, "jpeg_layout", refuse)
    assert outcome(data) == "done"


# --- PNG -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bit_depth", "colour_type"),
    [(8, 2), (8, 6), (8, 0), (8, 4), (16, 2), (16, 0), (8, 3)],
    ids=["rgb", "rgba", "grey", "grey-alpha", "rgb48", "grey16", "palette"],
)
@pytest.mark.parametrize("fast", [True, False], ids=["libpng-first", "pillow-only"])
def test_a_png_whose_stream_ends_early(
    bit_depth: int, colour_type: int, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fast:
        monkeypatch.setattr(png_fast, "_decoder", False)
    data = png_missing_rows(bit_depth=bit_depth, colour_type=colour_type)
    with pytest.raises(MediaError) as info:
        decode_image(data, max_pixels=50_000_000)
    assert info.value.code == ErrorCode.CORRUPT_MEDIA
    assert "64x64" in info.value.message and "16%" in info.value.message


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16", "1"])
def test_complete_pngs_ending_in_zero_rows_are_classified(mode: str) -> None:
    img = Image.new(mode, (40, 30))  # every row zero: black, or fully transparent
    assert outcome(encode(img, "PNG")) == "done"


def _interlaced_png(width: int, height: int, stream: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(stream))
        + _chunk(b"IEND", b"")
    )


def test_interlaced_pngs_are_checked_pass_by_pass() -> None:
    # 8x8 RGB, Adam7: passes of 1x1, 1x1, 2x1, 2x2, 4x2, 4x4, 8x4 pixels, a filter byte a row.
    assert truncation.png_expected_bytes(8, 8, 8, 2, 1) == 207
    assert truncation.png_expected_bytes(8, 8, 8, 2, 0) == 8 * 25
    assert truncation.png_expected_bytes(1, 1, 8, 2, 1) == 4  # only the first pass has pixels
    complete = _interlaced_png(8, 8, b"\x00" * 207)
    assert outcome(complete) == "done"
    # Up to the sixth pass: every other row is missing, the last row is not.
    missing_pass_7 = _interlaced_png(8, 8, bytes(b % 200 + 1 if i % 13 else 0 for i, b in
                                                 enumerate(range(107))))  # fmt: skip
    img = open_image(missing_pass_7, max_pixels=10_000)
    with pytest.raises(MediaError) as info:
        load_rgb(img, data=missing_pass_7)
    assert info.value.code == ErrorCode.CORRUPT_MEDIA


def test_png_expected_bytes_match_what_encoders_write() -> None:
    for mode in ("1", "L", "P", "RGB", "RGBA", "LA", "I;16"):
        for size in ((1, 1), (7, 3), (33, 17)):
            data = encode(Image.new(mode, size), "PNG")
            parsed = truncation._png_header_and_data(data)
            assert parsed is not None
            header, idat = parsed
            stream = zlib.decompress(b"".join(bytes(part) for part in idat))
            assert truncation.png_expected_bytes(*header) == len(stream), (mode, size)


# --- the formats whose decoders raise by themselves ------------------------------------------


def _cut(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("gif-frame-claims-64", gif_frame_claiming(64, 64)),
        ("gif-cut", _cut(encode(photo().convert("P"), "GIF"))),
        ("webp-lossy-cut", _cut(encode(photo(), "WEBP", quality=80))),
        ("webp-lossless-cut", _cut(encode(photo(), "WEBP", lossless=True))),
        ("heic-claims-2x", heic_claiming_twice_its_size()),
        ("heic-cut", _cut(heic_still(), 0.8)),
        ("avif-cut", _cut(encode(photo(), "AVIF", quality=80), 0.8)),
        ("bmp-cut", _cut(encode(photo(), "BMP"))),
        ("tiff-cut", _cut(encode(photo(), "TIFF"))),
        ("png-cut", _cut(encode(photo(), "PNG"))),
        ("jpeg-cut", _cut(encode(photo(), "JPEG"))),
    ],
)
def test_every_format_refuses_data_that_ends_early(name: str, data: bytes) -> None:
    assert outcome(data) == "CORRUPT_MEDIA", name


def test_through_the_pipeline_no_label_is_given(tmp_path: Path) -> None:
    model = Model.load(colour_model(tmp_path / "colour.onnx"), threads=1)
    for data in (jpeg_claiming(7_000, 7_000), png_missing_rows(), jpeg_cut_with_end_marker()):
        with pytest.raises(MediaError) as info:
            classify_bytes(data, model, top_k=3, limits=Limits())
        assert info.value.code == ErrorCode.CORRUPT_MEDIA


def test_jpeg_layout_gives_up_on_what_it_does_not_know() -> None:
    assert truncation.jpeg_layout(b"not a jpeg") is None
    assert truncation.jpeg_layout(b"\xff\xd8\xff\xc0\x00") is None
    good = encode(photo(), "JPEG")
    assert truncation.jpeg_layout(good[:2] + b"\x00" + good[2:]) is None
    layout = truncation.jpeg_layout(good)
    assert layout is not None and layout.coding == "baseline" and len(layout.scans) == 1
    assert layout.scans[0].data_end == len(good) - 2  # the end marker
    assert io.BytesIO(good).read(2) == b"\xff\xd8"
