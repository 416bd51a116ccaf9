"""A corpus of hostile, broken and awkward uploads, generated at test time.

Why generated, not committed: the files are tiny, fully described by the code that
makes them, and a reviewer reads here *why* each one is hostile. The same corpus
feeds the server-free test (``tests/functions/media/test_hostile_corpus.py``, every file
through ``classify_bytes``) and the end-to-end test (every file uploaded through the
Storage emulator), so both check one list of expectations.

Each :class:`HostileFile` carries a full object name, the bytes, the content type an
uploader sends (often a lie), and the outcome the pipeline must produce: ``"done"`` or
the specific :class:`~media_classifier.errors.ErrorCode`. Objects the function must
ignore (outside the watched prefix, folder placeholders) have ``ignored=True``; their
``expect`` still says what the bytes would give, so the unit test checks them too.

Decompression bombs are crafted headers (a few hundred bytes declaring 50,000 x
50,000 pixels), never allocated images. The whole corpus is well under a few MB.
"""

from __future__ import annotations

import functools
import io
import os
import random
import shutil
import struct
import subprocess
import tempfile
import zipfile
import zlib
from dataclasses import dataclass

from PIL import Image

DONE = "done"
# Error codes as plain strings (they equal ``ErrorCode`` values) so this module does
# not import the functions package: the e2e tests compare them with document fields.
EMPTY = "EMPTY"
UNSUPPORTED = "UNSUPPORTED_MEDIA"
CORRUPT = "CORRUPT_MEDIA"
TOO_LARGE = "TOO_LARGE"
TOO_LONG = "TOO_LONG"

#: Google Cloud Storage's limit on object names (UTF-8 bytes).
GCS_MAX_NAME_BYTES = 1024


@dataclass(frozen=True)
class HostileFile:
    """One upload: where it goes, what it is, what it claims to be, what must happen."""

    name: str
    data: bytes
    content_type: str
    expect: str
    why: str
    ignored: bool = False

    @property
    def slug(self) -> str:
        """A short ASCII id for test parametrisation (names are deliberately nasty)."""
        return self.why.split(":")[0]


# --- tiny encoders --------------------------------------------------------------


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _gradient(size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
    """A small image with structure (compresses realistically, decodes non-trivially)."""
    img = Image.linear_gradient("L").resize(size)
    if mode == "L":
        return img
    rgb = Image.merge("RGB", (img, img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), img))
    return rgb.convert(mode) if mode != "RGB" else rgb


def _chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_raw(
    width: int, height: int, *, bit_depth: int, colour_type: int, rows: bytes | None = None
) -> bytes:
    """A PNG written chunk by chunk, so headers can declare what the data does not hold."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    if rows is None:  # a single filter byte + a few zero pixels: plenty for a bomb header
        rows = b"\x00" * 64
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def png_16bit_rgb(width: int = 48, height: int = 32) -> bytes:
    """48-bit RGB (16 bits per channel), which Pillow's encoder cannot write itself."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            rows += struct.pack(">HHH", x * 1300 % 65536, y * 2000 % 65536, 40000)
    return png_raw(width, height, bit_depth=16, colour_type=2, rows=bytes(rows))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A ~100-byte PNG whose header declares ``width`` x ``height`` RGB pixels."""
    return png_raw(width, height, bit_depth=8, colour_type=2)


@functools.cache
def heic_still() -> bytes:
    """A small HEVC-coded HEIC, written like an iPhone's (pillow-heif's x265 encoder)."""
    from tests.media_factory import heic_bytes

    return heic_bytes(_gradient(), quality=80)


def heic_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real HEIC whose image-size box (``ispe``) declares ``width`` x ``height`` pixels.

    libheif reports the declared size without decoding (its own security limit is
    32768 x 32768, far above ours), so the pixel limit must refuse it first.
    """
    data = bytearray(heic_still())
    at = data.index(b"ispe") + 8  # box type, then 4 bytes of version and flags
    struct.pack_into(">II", data, at, width, height)
    return bytes(data)


def jpeg_with_size(width: int, height: int) -> bytes:
    """A valid small baseline JPEG whose SOF0 header is patched to declare another size.

    The entropy-coded data still describes the small image, so nothing close to the
    declared size exists anywhere: only the header lies.
    """
    data = bytearray(_save(_gradient((16, 16)), "JPEG", quality=80))
    sof = data.find(b"\xff\xc0")
    if sof < 0:
        raise AssertionError("Pillow wrote no baseline SOF0 marker")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_claiming(width: int, height: int, *, progressive: bool = False) -> bytes:
    """A 64x64 JPEG whose frame header claims ``width`` x ``height``: data for 64x64 only.

    libjpeg meets the end marker long before the blocks the header promises, warns (which
    Pillow ignores) and decodes the rest as grey: this came back ``done`` with a label.
    """
    data = bytearray(_save(_gradient((64, 64)), "JPEG", quality=85, progressive=progressive))
    sof = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_cut_with_end_marker(keep: float = 0.5, **save: object) -> bytes:
    """A 640x480 JPEG cut after ``keep`` of its bytes, with an end marker put back.

    A plain cut is refused by Pillow ("image file is truncated"); the end marker makes
    libjpeg fill the missing blocks with grey instead, silently.
    """
    data = _save(_gradient((640, 480)), "JPEG", quality=85, **save)
    return data[: int(len(data) * keep)] + b"\xff\xd9"


def png_missing_rows(
    width: int = 64, height: int = 64, *, rows: int = 10, bit_depth: int = 8, colour_type: int = 2
) -> bytes:
    """A PNG whose zlib stream ends, cleanly, after ``rows`` of its ``height`` rows.

    Pillow's decoder stops at the end of the stream and leaves the other rows zero.
    """
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = b"\x00" + bytes((7 + i) % 256 for i in range(width * channels * bit_depth // 8))
    if colour_type == 3:
        return _palette_rows_png(width, height, rows)
    return png_raw(width, height, bit_depth=bit_depth, colour_type=colour_type, rows=row * rows)


def _palette_rows_png(width: int, height: int, rows: int) -> bytes:
    palette = bytes(range(256)) * 3
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    data = (b"\x00" + bytes(i % 256 for i in range(width))) * rows
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"PLTE", palette[:768])
        + _chunk(b"IDAT", zlib.compress(data))
        + _chunk(b"IEND", b"")
    )


def gif_frame_claiming(width: int, height: int) -> bytes:
    """A GIF whose screen and frame claim ``width`` x ``height``, with 16x16 of LZW data."""
    data = bytearray(_save(_gradient((16, 16)).convert("P"), "GIF"))
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while data[pos] == 0x21:  # extension blocks before the image descriptor
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    struct.pack_into("<HH", data, 6, width, height)
    struct.pack_into("<HH", data, pos + 5, width, height)
    return bytes(data)


def heic_claiming_twice_its_size() -> bytes:
    """A real HEIC whose ``ispe`` box claims twice the width and height it codes."""
    data = bytearray(heic_still())
    at = data.index(b"ispe") + 8
    width, height = struct.unpack_from(">II", data, at)
    struct.pack_into(">II", data, at, width * 2, height * 2)
    return bytes(data)


def gif_with_screen(width: int, height: int) -> bytes:
    """A 1x1 GIF frame on a logical screen of ``width`` x ``height``."""
    data = bytearray(_save(Image.new("P", (1, 1)), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)
    return bytes(data)


def gif_frames_on_screen(width: int, height: int, *, frames: int) -> bytes:
    """``frames`` 1x1 frames (20 ms each) on a ``width`` x ``height`` logical screen.

    Each frame is legal and tiny, but a decoder that composites every frame on the
    full screen pays ``frames * width * height`` pixels: an animation bomb.
    """
    body = bytearray(b"GIF89a" + struct.pack("<HH", width, height) + b"\x80\x00\x00")
    body += b"\x00\x00\x00\xff\xff\xff"  # 2-entry global colour table
    body += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for _ in range(frames):
        body += b"\x21\xf9\x04\x00" + struct.pack("<H", 2) + b"\x00\x00"  # 20 ms
        body += b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00\x02\x02\x44\x01\x00"
    return bytes(body + b"\x3b")


def gif_growing_frame(width: int, height: int) -> bytes:
    """A 16x16 GIF whose second frame declares ``width`` x ``height``.

    The header (the only size a decoder checks before decoding) is harmless; Pillow
    grows the canvas when it reaches the second frame.
    """
    body = bytearray(b"GIF89a" + struct.pack("<HH", 16, 16) + b"\x80\x00\x00")
    body += b"\x00\x00\x00\xff\xff\xff"
    for w, h in ((1, 1), (width, height)):
        body += b"\x21\xf9\x04\x00" + struct.pack("<H", 10) + b"\x00\x00"
        body += b"\x2c" + struct.pack("<HHHH", 0, 0, w, h) + b"\x00\x02\x02\x44\x01\x00"
    return bytes(body + b"\x3b")


def gif_js_polyglot() -> bytes:
    """A GIF that is also valid JavaScript (``GIF89a=1;alert(...)``), the classic GIFAR trick.

    The screen width bytes ``/*`` open a JS comment; a GIF comment extension closes it and
    runs code; the trailing ``*/`` after the GIF trailer closes the comment reopened there.
    """
    js = b"*/=1;alert('polyglot');/*"
    body = bytearray(b"GIF89a")
    body += b"/*" + struct.pack("<H", 10)  # logical screen 10799 x 10
    body += bytes([0x80, 0, 0])  # global colour table of 2 entries
    body += b"\x00\x00\x00\xff\xff\xff"
    body += b"\x21\xfe" + bytes([len(js)]) + js + b"\x00"  # comment extension
    body += b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00"  # 1x1 image descriptor
    body += b"\x02\x02\x44\x01\x00"  # LZW: min code 2, one sub-block, terminator
    body += b"\x3b*/"
    return bytes(body)


def _animation(fmt: str, frames: int = 6, size: tuple[int, int] = (48, 32), **kw: object) -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    images = [Image.new("RGB", size, colours[i % 3]) for i in range(frames)]
    return _save(images[0], fmt, save_all=True, append_images=images[1:], **kw)


def _multipage_tiff() -> bytes:
    pages = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    return _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _pdf() -> bytes:
    """A minimal, valid one-page PDF (written by hand: no PDF library needed)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    b'<script>alert("svg")</script><rect width="100" height="100" fill="red"/></svg>\n'
)


# --- videos (through the ffmpeg that imageio-ffmpeg bundles) ---------------------


def ffmpeg_exe() -> str:
    """The bundled ffmpeg binary (a runtime dependency of the functions, so always there)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg(args: list[str], suffix: str) -> bytes:
    directory = tempfile.mkdtemp(prefix="hostile-")
    try:
        out = os.path.join(directory, "out" + suffix)
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args, out]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        with open(out, "rb") as fh:
            return fh.read()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


_YUV = ["-pix_fmt", "yuv420p"]  # the pixel format every player decodes


@functools.cache
def tiny_mp4() -> bytes:
    """Two seconds of 64x48 H.264 test pattern (about 10 KB): the seed of the MP4 cases."""
    return _ffmpeg(
        ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "2", "-c:v", "libx264", *_YUV],
        ".mp4",
    )


@functools.cache
def _long_mp4() -> bytes:
    """601 s of a 16x16 red frame at 1 fps: tiny, but just over the default 600 s limit."""
    return _ffmpeg(
        ["-f", "lavfi", "-i", "color=c=red:s=16x16:r=1", "-t", "601", "-c:v", "libx264", *_YUV],
        ".mp4",
    )


@functools.cache
def _audio_only_mp4() -> bytes:
    return _ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac"], ".mp4")


@functools.cache
def _tiny_webm() -> bytes:
    return _ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=10",
            "-t",
            "1",
            "-c:v",
            "libvpx",
            "-b:v",
            "100k",
        ],
        ".webm",
    )


# --- the corpus -----------------------------------------------------------------


def _long_name(prefix: str, total_bytes: int) -> str:
    """An object name of exactly ``total_bytes`` UTF-8 bytes, ending in ``.png``."""
    stem = prefix + "long-"
    pad = total_bytes - len(stem.encode()) - len(".png")
    if pad < 1:
        raise ValueError(f"prefix {prefix!r} leaves no room for a {total_bytes}-byte name")
    return stem + "n" * pad + ".png"


def corpus(
    uid: str = "hostile-user", run: str = "corpus", prefix: str = "uploads/"
) -> list[HostileFile]:
    """Every hostile file, named ``{prefix}{uid}/{run}/...`` (or outside the prefix).

    ``run`` keeps names unique across test runs against one long-lived stack.
    """
    base = f"{prefix}{uid}/{run}/"
    rng = random.Random(20261122)
    jpeg = _save(_gradient(), "JPEG", quality=85)
    png = _save(_gradient(), "PNG")
    heic = heic_still()
    webp = _save(_gradient((320, 240)), "WEBP", quality=80)
    mp4 = tiny_mp4()
    random_bytes = bytes(rng.randrange(256) for _ in range(4096))
    # Random bytes must not start with a known signature by chance (the seed is fixed).
    assert random_bytes[:2] not in (b"\xff\xd8", b"BM", b"PK"), "pick another seed"

    image_cases: list[tuple[str, bytes, str, str, str]] = [
        # (file name under base, bytes, content type sent, expected outcome, why)
        ("empty.jpg", b"", "image/jpeg", EMPTY, "empty: zero bytes"),
        ("one-byte.png", b"\x89", "image/png", UNSUPPORTED, "one-byte: a lone PNG lead byte"),
        ("random.bin", random_bytes, "application/octet-stream", UNSUPPORTED, "random: 4 KiB"),
        (
            "random-jpeg-magic.jpg",
            b"\xff\xd8\xff\xe0" + random_bytes,
            "image/jpeg",
            CORRUPT,
            "random-after-jpeg-magic: JPEG signature then noise",
        ),
        (
            "random-png-magic.png",
            PNG_SIGNATURE + random_bytes,
            "image/png",
            CORRUPT,
            "random-after-png-magic: PNG signature then noise",
        ),
        ("truncated.jpg", jpeg[: len(jpeg) // 2], "image/jpeg", CORRUPT, "truncated-jpeg: half"),
        ("jpeg-header-only.jpg", jpeg[:120], "image/jpeg", CORRUPT, "jpeg-header-only: 120 B"),
        ("truncated.png", png[: len(png) // 2], "image/png", CORRUPT, "truncated-png: half"),
        # The data ends before the picture does, yet the decoder would not say so.
        (
            "jpeg-claims-7000.jpg",
            jpeg_claiming(7_000, 7_000),
            "image/jpeg",
            CORRUPT,
            "jpeg-claims-7000: 64x64 of data under a 7000x7000 header",
        ),
        (
            "progressive-claims-7000.jpg",
            jpeg_claiming(7_000, 7_000, progressive=True),
            "image/jpeg",
            CORRUPT,
            "progressive-jpeg-claims-7000: 64x64 of data under a 7000x7000 header",
        ),
        (
            "jpeg-cut-eoi.jpg",
            jpeg_cut_with_end_marker(0.5),
            "image/jpeg",
            CORRUPT,
            "jpeg-cut-with-end-marker: half the data, then EOI",
        ),
        (
            "png-missing-rows.png",
            png_missing_rows(),
            "image/png",
            CORRUPT,
            "png-missing-rows: zlib stream ends after 10 of 64 rows",
        ),
        (
            "png16-missing-rows.png",
            png_missing_rows(bit_depth=16),
            "image/png",
            CORRUPT,
            "png-16-bit-missing-rows: the Pillow path",
        ),
        (
            "gif-claims-64.gif",
            gif_frame_claiming(64, 64),
            "image/gif",
            CORRUPT,
            "gif-frame-claims-more: 16x16 of data in a 64x64 frame",
        ),
        (
            "webp-cut.webp",
            webp[: len(webp) // 2],
            "image/webp",
            CORRUPT,
            "webp-truncated",
        ),
        ("png-sig-only.png", PNG_SIGNATURE, "image/png", CORRUPT, "png-signature-only: 8 B"),
        (
            "png-bad-crc.png",
            png[:29] + bytes([png[29] ^ 0xFF]) + png[30:],
            "image/png",
            CORRUPT,
            "png-bad-crc: IHDR checksum wrong",
        ),
        ("bad-zlib.png", _png_bad_zlib(), "image/png", CORRUPT, "png-bad-zlib: valid CRCs"),
        ("bomb-50k.png", png_bomb(), "image/png", TOO_LARGE, "png-bomb: 50000x50000 declared"),
        (
            "bomb-50k.jpg",
            jpeg_with_size(50_000, 50_000),
            "image/jpeg",
            TOO_LARGE,
            "jpeg-bomb: 50000x50000 declared",
        ),
        (
            "bomb-65k.gif",
            gif_with_screen(65_535, 65_535),
            "image/gif",
            TOO_LARGE,
            "gif-bomb: 65535x65535 logical screen",
        ),
        (
            "bomb-8k.png",
            png_bomb(8_000, 8_000),
            "image/png",
            TOO_LARGE,
            "png-over-limit: 64 MP, under Pillow's own bomb guard, over ours (50 MP)",
        ),
        (
            "bomb-60k-bmp.bmp",
            _bmp_with_size(60_000, 60_000),
            "image/bmp",
            TOO_LARGE,
            "bmp-bomb: 60000x60000 declared",
        ),
        (
            "png-zero-width.png",
            png_raw(0, 10, bit_depth=8, colour_type=2),
            "image/png",
            CORRUPT,
            "png-zero-width: IHDR declares 0x10",
        ),
        (
            "one-pixel.png",
            _save(Image.new("RGB", (1, 1), (0, 0, 255)), "PNG"),
            "image/png",
            DONE,
            "1x1-png",
        ),
        (
            "one-pixel.jpg",
            _save(Image.new("RGB", (1, 1), (255, 0, 0)), "JPEG"),
            "image/jpeg",
            DONE,
            "1x1-jpeg",
        ),
        (
            "wide-20000x10.png",
            _save(_gradient((20_000, 10)), "PNG"),
            "image/png",
            DONE,
            "20000x10-png",
        ),
        (
            "tall-10x20000.jpg",
            _save(_gradient((10, 20_000)), "JPEG"),
            "image/jpeg",
            DONE,
            "10x20000-jpeg",
        ),
        ("cmyk.jpg", _save(_gradient(mode="CMYK"), "JPEG"), "image/jpeg", DONE, "cmyk-jpeg"),
        (
            "progressive.jpg",
            _save(_gradient(), "JPEG", progressive=True),
            "image/jpeg",
            DONE,
            "progressive-jpeg",
        ),
        ("grey.jpg", _save(_gradient(mode="L"), "JPEG"), "image/jpeg", DONE, "greyscale-jpeg"),
        ("exif-rotated.jpg", _jpeg_with_orientation(6), "image/jpeg", DONE, "exif-orientation-6"),
        (
            "exif-orientation-99.jpg",
            _jpeg_with_orientation(99),
            "image/jpeg",
            DONE,
            "exif-orientation-invalid: 99",
        ),
        (
            "grey16.png",
            _save(_gradient(mode="L").convert("I;16"), "PNG"),
            "image/png",
            DONE,
            "16-bit-grey-png",
        ),
        ("rgb48.png", png_16bit_rgb(), "image/png", DONE, "16-bit-rgb-png: 48 bpp"),
        (
            "palette-transparent.png",
            _palette_transparent(),
            "image/png",
            DONE,
            "palette-transparency-png",
        ),
        ("grey-alpha.png", _save(_gradient(mode="LA"), "PNG"), "image/png", DONE, "la-png"),
        ("rgba.webp", _save(_gradient(mode="RGBA"), "WEBP"), "image/webp", DONE, "rgba-webp"),
        (
            "lossless.webp",
            _save(_gradient(), "WEBP", lossless=True),
            "image/webp",
            DONE,
            "lossless-webp",
        ),
        ("multipage.tiff", _multipage_tiff(), "image/tiff", DONE, "multipage-tiff: 3 pages"),
        ("stereo.mpo", _mpo(), "image/jpeg", DONE, "mpo: 2-frame multi-picture JPEG"),
        ("plain.bmp", _save(_gradient(), "BMP"), "image/bmp", DONE, "bmp"),
        (
            "icon.ico",
            _save(_gradient((64, 64)), "ICO", sizes=[(16, 16), (64, 64)]),
            "image/x-icon",
            DONE,
            "ico: two sizes",
        ),
        (
            "animated.gif",
            _animation("GIF", duration=200, loop=0),
            "image/gif",
            DONE,
            "animated-gif",
        ),
        (
            "animated.webp",
            _animation("WEBP", duration=200, loop=0),
            "image/webp",
            DONE,
            "animated-webp",
        ),
        ("animated.png", _animation("PNG", duration=200, loop=0), "image/png", DONE, "apng"),
        (
            "truncated-animated.gif",
            _animation("GIF", duration=200)[:-20],
            "image/gif",
            CORRUPT,
            "truncated-animated-gif: last frame cut",
        ),
        (
            "truncated-animated.png",
            _animation("PNG", duration=200)[:400],
            "image/png",
            CORRUPT,
            "truncated-apng: cut mid-frame",
        ),
        (
            "animation-bomb.gif",
            gif_frames_on_screen(7_000, 7_000, frames=50),
            "image/gif",
            TOO_LARGE,
            "gif-animation-bomb: 50 1x1 frames on a 7000x7000 screen, 1 KB",
        ),
        (
            "growing-frame.gif",
            gif_growing_frame(20_000, 20_000),
            "image/gif",
            TOO_LARGE,
            "gif-growing-frame: 16x16 screen, second frame 20000x20000",
        ),
        (
            "slow.gif",
            _animation("GIF", frames=2, duration=650_000),
            "image/gif",
            TOO_LONG,
            "gif-too-long: 2 frames of 650 s",
        ),
        ("drawing.svg", SVG, "image/svg+xml", UNSUPPORTED, "svg: with a script"),
        ("document.pdf", _pdf(), "application/pdf", UNSUPPORTED, "pdf"),
        ("notes.txt", b"just some text\n" * 20, "text/plain", UNSUPPORTED, "text"),
        (
            "page.html",
            b"<!DOCTYPE html><html><body>hi</body></html>",
            "text/html",
            UNSUPPORTED,
            "html",
        ),
        (
            "archive.zip",
            _zip({"a.jpg": jpeg}),
            "application/zip",
            UNSUPPORTED,
            "zip: holding a JPEG",
        ),
        (
            "jpeg-plus-zip.jpg",
            jpeg + _zip({"payload.txt": b"hidden"}),
            "image/jpeg",
            DONE,
            "polyglot-jpeg-zip: ZIP appended to a JPEG",
        ),
        ("gifar.gif", gif_js_polyglot(), "image/gif", DONE, "polyglot-gif-js"),
        # HEIF family: iPhone photos (HEIC, through libheif) and AVIF (Pillow).
        ("iphone.HEIC", heic, "image/heic", DONE, "heic: a HEVC still"),
        ("heic-octet", heic, "application/octet-stream", DONE, "lie-heic-as-octet-stream"),
        ("photo.avif", _save(_gradient(), "AVIF", quality=80), "image/avif", DONE, "avif"),
        (
            "heic-ftyp-only.heic",
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
            "image/heic",
            CORRUPT,
            "heic-ftyp-only: the brand box and nothing else",
        ),
        ("heic-cut.heic", heic[: len(heic) // 2], "image/heic", CORRUPT, "heic-truncated: half"),
        (
            "heic-claims-2x.heic",
            heic_claiming_twice_its_size(),
            "image/heic",
            CORRUPT,
            "heic-claims-larger: ispe says twice the coded size",
        ),
        ("heic-bomb.heic", heic_bomb(), "image/heic", TOO_LARGE, "heic-bomb: 20000x20000 header"),
        # Lying content types: the bytes decide.
        ("photo-as-video.mp4", jpeg, "video/mp4", DONE, "lie-jpeg-as-video/mp4"),
        ("photo-octet", png, "application/octet-stream", DONE, "lie-png-as-octet-stream"),
        ("video-as-jpeg.jpg", mp4, "image/jpeg", DONE, "lie-mp4-as-image/jpeg"),
        (
            "text-as-png.png",
            b"not an image at all\n",
            "image/png",
            UNSUPPORTED,
            "lie-text-as-image/png",
        ),
        # Videos.
        ("tiny.mp4", mp4, "video/mp4", DONE, "mp4: 2 s H.264"),
        ("tiny.webm", _tiny_webm(), "video/webm", DONE, "webm: 1 s VP8"),
        ("truncated.mp4", mp4[: len(mp4) // 2], "video/mp4", CORRUPT, "truncated-mp4: half"),
        ("ftyp-only.mp4", mp4[:32], "video/mp4", CORRUPT, "mp4-ftyp-only: 32 B"),
        (
            "audio-only.mp4",
            _audio_only_mp4(),
            "video/mp4",
            UNSUPPORTED,
            "audio-only-mp4: no video stream",
        ),
        ("long.mp4", _long_mp4(), "video/mp4", TOO_LONG, "mp4-too-long: 601 s"),
    ]
    files = [HostileFile(base + n, d, ct, ex, why) for n, d, ct, ex, why in image_cases]

    # Awkward names: the bytes are a good PNG; the name is what is hostile.
    tiny_png = _save(Image.new("RGB", (8, 8), (0, 0, 255)), "PNG")
    deep = base + "/".join(f"d{i}" for i in range(40)) + "/deep.png"
    names = [
        ("with spaces  and  double spaces.png", "name-spaces"),
        ("unicode-ünïcödé-日本語-🙂.png", "name-unicode"),
        ("nfd-cafe\u0301.png", "name-nfd: combining accent"),
        ("percent-%20-%2F-%-%zz.png", "name-percent: literal %20 %2F %zz"),
        ("hash-#frag#.png", "name-hash"),
        ("query-?a=1&b=2+3.png", "name-query-chars: ? & = +"),
        ("quotes-'\"!*()~.png", "name-quotes: ' \" ! * ( ) ~"),
        ("rtl-\u202etxt.png", "name-rtl-override: U+202E"),
        ("..dots...png", "name-dots"),
    ]
    files += [HostileFile(base + n, tiny_png, "image/png", DONE, why) for n, why in names]
    files.append(HostileFile(deep, tiny_png, "image/png", DONE, "name-deep: 40 folders"))
    files.append(
        HostileFile(
            _long_name(base, GCS_MAX_NAME_BYTES),
            tiny_png,
            "image/png",
            DONE,
            f"name-long: {GCS_MAX_NAME_BYTES} bytes, GCS's maximum",
        )
    )

    # Objects the function must ignore: no document may appear for them.
    outside = [
        (f"elsewhere/{uid}/{run}/photo.png", "outside-elsewhere"),
        (f"Uploads/{uid}/{run}/photo.png", "outside-case: Uploads/"),
        (f"uploadsX/{uid}/{run}/photo.png", "outside-lookalike: uploadsX/"),
        (f"{run}/uploads/{uid}/photo.png", "outside-nested: prefix not at the start"),
    ]
    files += [HostileFile(n, tiny_png, "image/png", DONE, why, ignored=True) for n, why in outside]
    files.append(
        HostileFile(
            base + "placeholder-folder/",
            b"",
            "application/x-directory",
            EMPTY,
            "folder-placeholder: name ends in /",
            ignored=True,
        )
    )
    return files


def _bmp_with_size(width: int, height: int) -> bytes:
    """A BMP whose info header declares ``width`` x ``height`` but holds 2x2 pixels."""
    data = bytearray(_save(Image.new("RGB", (2, 2)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def _jpeg_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(_gradient(), "JPEG", exif=exif.tobytes())


def _png_bad_zlib() -> bytes:
    """Every chunk checksum right, but the IDAT payload is not a zlib stream.

    (Random bit flips are no good here: zlib and libpng shrug many of them off.)
    """
    return (
        png_raw(32, 32, bit_depth=8, colour_type=2)[:33]
        + _chunk(b"IDAT", b"\x78\x9c" + b"\xff" * 40)
        + _chunk(b"IEND", b"")
    )


def _mpo() -> bytes:
    frames = [_gradient(), _gradient().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return _save(frames[0], "MPO", save_all=True, append_images=frames[1:])


def _palette_transparent() -> bytes:
    img = _gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _save(img, "PNG", transparency=0)


def total_bytes(files: list[HostileFile]) -> int:
    return sum(len(f.data) for f in files)


if __name__ == "__main__":
    items = corpus()
    for item in items:
        flag = " (ignored)" if item.ignored else ""
        print(f"{len(item.data):>9,}  {item.expect:<18} {item.slug}{flag}")
    print(f"{len(items)} files, {total_bytes(items):,} bytes")
