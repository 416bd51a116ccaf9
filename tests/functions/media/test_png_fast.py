"""The libpng fast path for common PNGs gives exactly what the Pillow path gives.

Every case is decoded twice, through :func:`load_rgb` with the bytes (fast path allowed)
and without them (Pillow only), and the two outcomes (pixels, or the error code) must be
the same. ``png_fast.decoded`` tells whether the fast path really decoded the file, so
the common case cannot silently fall back to Pillow.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Limits, classify_bytes
from media_classifier.media import png_fast
from media_classifier.media.images import decode_image, load_rgb, open_image
from tests.functions.conftest import encode
from tools.hostile_corpus import png_16bit_rgb, png_bomb

LIMIT = 50_000_000
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _picture(mode: str, size: tuple[int, int] = (53, 37)) -> Image.Image:
    """Noise plus a gradient (every PNG filter gets used), with partial alpha where any."""
    rng = np.random.default_rng(7)
    width, height = size
    ramp = np.linspace(0, 255, width * height).reshape(height, width)
    noise = rng.integers(0, 40, (height, width, 4))
    array = np.clip(ramp[..., None] + noise, 0, 255).astype(np.uint8)
    array[..., 3] = rng.integers(0, 256, (height, width), dtype=np.uint8)  # partial alpha
    array[:4, :, 3] = 0  # fully transparent rows
    array[-4:, :, 3] = 255  # opaque rows
    rgba = Image.fromarray(array, "RGBA")
    return rgba if mode == "RGBA" else rgba.convert(mode)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _before(data: bytes, kind: bytes, chunk: bytes) -> bytes:
    """``chunk`` inserted just before the chunk of type ``kind`` (the last one)."""
    at = data.rindex(kind) - 4
    return data[:at] + chunk + data[at:]


def _idat_span(data: bytes) -> tuple[int, int]:
    """(start, end) of the first IDAT chunk's body."""
    at = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4 : at])
    return at + 4, at + 4 + length


def _interlaced(size: tuple[int, int] = (13, 11)) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow cannot write interlaced files)."""
    width, height = size
    pixels = np.asarray(_picture("RGB", size))
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4)]
    passes += [(1, 0, 2, 2), (0, 1, 1, 2)]
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        if x0 >= width or y0 >= height:
            continue
        for y in range(y0, height, dy):
            raw += b"\x00" + pixels[y, x0::dx].tobytes()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return (
        SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(bytes(raw)))
        + _chunk(b"IEND", b"")
    )


def _raw_idat(idat: bytes, width: int = 5, height: int = 4) -> bytes:
    """An 8-bit RGB PNG with this IDAT body (valid CRCs whatever the body holds)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _raw_rgb(rows: bytes) -> bytes:
    return _raw_idat(zlib.compress(rows))


def _rows(width: int = 5, height: int = 4) -> bytes:
    return b"".join(b"\x00" + bytes(range(y, y + 3 * width)) for y in range(height))


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _text(key: str, value: str, kind: str = "text") -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    if kind == "itxt":
        info.add_itxt(key, value)
    else:
        info.add_text(key, value, zip=kind == "ztxt")
    return info


def _raw_profile_exif(orientation: int) -> str:
    """ImageMagick's way to put EXIF in a PNG text chunk (Pillow reads it)."""
    hexed = _exif(orientation).tobytes().hex()
    return f"\nexif\n{len(hexed) // 2:8d}\n{hexed}\n"


XMP_ROTATED = '<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'


def _outcome(data: bytes, *, fast: bool) -> tuple:
    """What load_rgb gives: (mode, size, pixels), or the error code.

    ``fast=False`` is the Pillow path as served (libpng switched off, the bytes given,
    so the truncation rule applies to both paths alike).
    """
    saved = png_fast._decoder
    if not fast:
        png_fast._decoder = False
    try:
        img = load_rgb(open_image(data, max_pixels=LIMIT), data=data)
    except MediaError as exc:
        return ("error", exc.code)
    finally:
        png_fast._decoder = saved
    return (img.mode, img.size, np.asarray(img).tobytes())


def _compare(data: bytes) -> tuple[tuple, bool]:
    """The common outcome of both paths, and whether the fast path decoded the file."""
    pillow = _outcome(data, fast=False)
    before = png_fast.decoded
    fast = _outcome(data, fast=True)
    assert fast == pillow
    return fast, png_fast.decoded > before


def test_imagecodecs_is_installed() -> None:
    """The deployed requirements carry imagecodecs; without it every PNG is slow again."""
    assert png_fast.available()


#: Files the fast path must decode itself.
FAST_CASES = {
    "rgb": lambda: encode(_picture("RGB"), "PNG"),
    "rgba-partial-alpha": lambda: encode(_picture("RGBA"), "PNG"),
    "grey": lambda: encode(_picture("L"), "PNG"),
    "grey-alpha": lambda: encode(_picture("LA"), "PNG"),
    "rgb-compress-0": lambda: encode(_picture("RGB"), "PNG", compress_level=0),
    "rgb-split-idat": lambda: _split_idat(encode(_picture("RGB"), "PNG")),
    "one-pixel": lambda: encode(Image.new("RGB", (1, 1), (0, 0, 255)), "PNG"),
    "icc-and-gamma": lambda: _before(
        encode(_picture("RGB"), "PNG", icc_profile=b"\0" * 200),
        b"IDAT",
        _chunk(b"gAMA", struct.pack(">I", 30000)) + _chunk(b"sBIT", b"\x05\x06\x05"),
    ),
    "rgba-bkgd": lambda: _before(
        encode(_picture("RGBA"), "PNG"), b"IDAT", _chunk(b"bKGD", b"\0\0\0\0\0\0")
    ),
    "harmless-text": lambda: encode(_picture("RGB"), "PNG", pnginfo=_text("Software", "x")),
    "no-iend": lambda: encode(_picture("RGB"), "PNG")[:-12],
    "trailing-bytes": lambda: encode(_picture("RGB"), "PNG") + b"trailing junk",
    "extra-zlib-data": lambda: _raw_rgb(_rows() + b"\0" * 40),
}


@pytest.mark.parametrize("make", FAST_CASES.values(), ids=FAST_CASES.keys())
def test_fast_path_decodes_common_pngs_as_pillow_does(make, capsys) -> None:
    outcome, took_fast = _compare(make())
    assert outcome[0] == "RGB"
    assert took_fast
    assert capsys.readouterr().err == ""  # libpng's warnings are not logged


#: Files that must go to Pillow (with the result or the error Pillow gives).
PILLOW_CASES = {
    "palette": lambda: encode(_picture("RGB").convert("P"), "PNG"),
    "palette-transparency": lambda: encode(_picture("RGB").convert("P"), "PNG", transparency=3),
    "rgb-colour-key": lambda: encode(_picture("RGB"), "PNG", transparency=(10, 20, 30)),
    "grey-colour-key": lambda: encode(_picture("L"), "PNG", transparency=40),
    "1-bit": lambda: encode(_picture("L").convert("1"), "PNG"),
    "16-bit-grey": lambda: encode(Image.new("I;16", (20, 10), 40000), "PNG"),
    "16-bit-rgb": png_16bit_rgb,
    "interlaced": _interlaced,
    "exif-chunk": lambda: encode(_picture("RGB"), "PNG", exif=_exif(6)),
    "exif-after-idat": lambda: _before(
        encode(_picture("RGB"), "PNG"), b"IEND", _chunk(b"eXIf", _exif(6).tobytes()[6:])
    ),
    "raw-profile-exif": lambda: encode(
        _picture("RGB"), "PNG", pnginfo=_text("Raw profile type exif", _raw_profile_exif(6))
    ),
    "xmp-orientation": lambda: encode(
        _picture("RGB"), "PNG", pnginfo=_text("XML:com.adobe.xmp", XMP_ROTATED, "itxt")
    ),
    "text-after-idat": lambda: _before(
        encode(_picture("RGB"), "PNG"), b"IEND", _chunk(b"tEXt", b"Comment\0late")
    ),
    "bad-ztxt-after-idat": lambda: _before(
        encode(_picture("RGB"), "PNG"), b"IEND", _chunk(b"zTXt", b"Comment\0\x07zz")
    ),
    "apng": lambda: encode(
        _picture("RGB"), "PNG", save_all=True, append_images=[_picture("L").convert("RGB")]
    ),
    "truncated": lambda: encode(_picture("RGB"), "PNG")[:600],
    "bad-idat-crc": lambda: _flip_crc(encode(_picture("RGB"), "PNG")),
    "bad-zlib": lambda: _raw_idat(b"\x78\x9c\x07" + bytes(20)),  # reserved block type
    "short-data": lambda: _raw_rgb(_rows()[:-4]),
    "bad-filter": lambda: _raw_rgb(b"\x07" + _rows()[1:]),
    "split-idat-with-chunk-between": lambda: _split_idat(
        encode(_picture("RGB"), "PNG"), between=_chunk(b"tEXt", b"k\0v")
    ),
}


def _flip_crc(data: bytes) -> bytes:
    _, end = _idat_span(data)
    return data[:end] + bytes([data[end] ^ 0xFF]) + data[end + 1 :]


def _split_idat(data: bytes, between: bytes = b"") -> bytes:
    """The image data in two IDAT chunks, with ``between`` between them."""
    start, end = _idat_span(data)
    body = data[start:end]
    half = len(body) // 2
    middle = _chunk(b"IDAT", body[:half]) + between + _chunk(b"IDAT", body[half:])
    return data[: start - 8] + middle + data[end + 4 :]


@pytest.mark.parametrize("make", PILLOW_CASES.values(), ids=PILLOW_CASES.keys())
def test_other_pngs_go_to_pillow(make) -> None:
    _, took_fast = _compare(make())
    assert not took_fast


@pytest.mark.parametrize(
    "make",
    [PILLOW_CASES[k] for k in ("exif-chunk", "exif-after-idat", "raw-profile-exif")]
    + [PILLOW_CASES["xmp-orientation"]],
    ids=["exif-chunk", "exif-after-idat", "raw-profile-exif", "xmp-orientation"],
)
def test_orientation_carriers_are_really_rotated(make) -> None:
    """The cases above would prove nothing if Pillow did not rotate them."""
    outcome, _ = _compare(make())
    assert outcome[1] == (37, 53)  # 53x37 stored, orientation 6


def test_broken_files_keep_their_error_codes() -> None:
    codes = {
        name: _compare(PILLOW_CASES[name]())[0]
        for name in ("truncated", "bad-zlib", "short-data", "bad-filter", "bad-ztxt-after-idat")
    }
    assert all(outcome == ("error", ErrorCode.CORRUPT_MEDIA) for outcome in codes.values()), codes
    # Pillow does not check IDAT CRCs (libpng does): the file still decodes, through Pillow.
    assert _compare(PILLOW_CASES["bad-idat-crc"]())[0][0] == "RGB"


def test_declared_size_is_refused_before_decoding() -> None:
    with pytest.raises(MediaError) as info:
        decode_image(png_bomb(), max_pixels=LIMIT)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_large_images_stay_on_pillow(monkeypatch) -> None:
    data = encode(_picture("RGB"), "PNG")
    monkeypatch.setattr(png_fast, "MAX_PIXELS", 53 * 37 - 1)
    assert not _compare(data)[1]
    monkeypatch.setattr(png_fast, "MAX_PIXELS", 53 * 37)
    assert _compare(data)[1]


def test_without_imagecodecs_every_png_goes_to_pillow(monkeypatch) -> None:
    monkeypatch.setattr(png_fast, "_decoder", False)
    assert not png_fast.available()
    assert not _compare(encode(_picture("RGBA"), "PNG"))[1]


def test_plan_reads_only_the_layout() -> None:
    assert png_fast.plan(encode(_picture("RGBA"), "PNG")) == ("RGBA", 53, 37)
    assert png_fast.plan(encode(_picture("RGB"), "JPEG")) is None
    assert png_fast.plan(SIGNATURE) is None


def test_classify_bytes_takes_the_fast_path(tmp_path: Path) -> None:
    from tests.model_factory import colour_model

    model = Model.load(colour_model(tmp_path / "colour.onnx"), threads=1)
    data = encode(_picture("RGBA"), "PNG")
    before = png_fast.decoded
    fast = classify_bytes(data, model, top_k=3, limits=Limits())
    assert png_fast.decoded == before + 1
    png_fast._decoder = False
    try:
        slow = classify_bytes(data, model, top_k=3, limits=Limits())
    finally:
        png_fast._decoder = None
    assert fast.labels == slow.labels


SEEDS = [encode(_picture(mode, (19, 13)), "PNG") for mode in ("RGB", "RGBA", "L", "LA")]


def _edit(draw: st.DrawFn, data: bytearray, low: int = 0) -> None:
    """1-3 random edits of ``data`` (from offset ``low`` on)."""
    for _ in range(draw(st.integers(1, 3))):
        if len(data) <= low:
            return
        pos = draw(st.integers(low, len(data) - 1))
        op = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[pos : pos + draw(st.integers(1, 16))]


@st.composite
def _damaged_png(draw: st.DrawFn) -> bytes:
    """A seed damaged where the decoders look: the raw file (CRCs then mostly fail), or
    the IHDR fields, the compressed image data or the filtered rows with valid CRCs."""
    seed = draw(st.sampled_from(SEEDS))
    where = draw(st.sampled_from(["file", "ihdr", "zlib", "rows"]))
    if where == "file":
        data = bytearray(seed)
        _edit(draw, data, low=8)
        return bytes(data)
    start, end = _idat_span(seed)
    ihdr, idat = bytearray(seed[16:29]), bytearray(seed[start:end])
    if where == "ihdr":
        _edit(draw, ihdr)
    elif where == "zlib":
        _edit(draw, idat, low=2)
    else:
        rows = bytearray(zlib.decompress(bytes(idat)))
        _edit(draw, rows)
        idat = bytearray(zlib.compress(bytes(rows)))
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_damaged_png())
def test_damaged_pngs_give_the_same_outcome_on_both_paths(data: bytes) -> None:
    _compare(data)
