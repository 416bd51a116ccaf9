"""A faster decoder for the common still PNG: libpng (through ``imagecodecs``) instead of Pillow.

Why: Pillow's PNG decoder inflates with stock zlib one row at a time and un-filters with
plain C loops; on the benchmark's 640x480 RGB photo (0.38 MB) it takes 8.5 ms, libpng 1.6
as built by ``imagecodecs`` 3.5 ms, for the same pixels (bench/README.md has the numbers
and the candidates that were measured: pyspng, imagecodecs' spng, isal/libdeflate inflate).

Only the common case takes this path, and only when the result is the one Pillow would
give: a non-interlaced 8-bit greyscale, grey+alpha, RGB or RGBA PNG whose header passed
:func:`images.open_image` (so the pixel limit is already checked), with no ``tRNS``
(Pillow ignores colour-key transparency, libpng would apply it), no APNG chunk, no EXIF
or XMP anywhere (``eXIf`` or text chunks whose keyword names them: Pillow reads an
orientation from all of these) and nothing but ``IEND`` after the image data (chunks
there are read by Pillow's ``load_end``, which can fail on them). Everything else, and
any file that libpng refuses, goes to Pillow, which then decodes it or raises the error
it always raised: libpng is stricter than Pillow (it checks IDAT CRCs and the zlib
checksum), so this path never turns a file that Pillow accepts into an error. Gamma,
``sBIT``, ``bKGD`` and ICC profiles are ignored by both. Images above
:data:`MAX_PIXELS` also stay on Pillow: an RGB image exists twice for a moment here (the
decoded array, then Pillow's copy), and the worst cases measured by
``bench/peak_memory.py`` must not grow.

``imagecodecs`` is optional: without it (e.g. model_build's Python 3.11 environment, for
which the pinned release has no wheel) every PNG takes the Pillow path, with identical
results (``tests/functions/media/test_png_fast.py`` checks that they are identical).
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

#: Larger images go to Pillow (peak memory, see the module docstring).
MAX_PIXELS = 16_000_000
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: IHDR colour type -> (Pillow mode, channels), 8-bit only.
_MODES = {0: ("L", 1), 2: ("RGB", 3), 4: ("LA", 2), 6: ("RGBA", 4)}
_CHANNELS = dict(_MODES.values())
#: Chunks that send the file to Pillow wherever they are.
_REFUSED = {b"tRNS", b"acTL", b"fcTL", b"fdAT", b"eXIf"}
_TEXT = {b"tEXt", b"zTXt", b"iTXt"}
_CHUNK = struct.Struct(">I4s")

#: How many images this module decoded (tests check that the common case really gets here).
decoded = 0
_decoder = None


def _png_decode():
    """``imagecodecs.png_decode``, or ``None`` when imagecodecs is not installed."""
    global _decoder
    if _decoder is None:
        try:
            from imagecodecs import png_decode
        except ImportError:
            png_decode = False
        else:
            # libpng's benign warnings ("IDAT: Too much image data") would reach stderr
            # through logging's last resort; Pillow's path logs nothing for those files.
            logger = logging.getLogger("imagecodecs")
            logger.addHandler(logging.NullHandler())
            logger.propagate = False
        _decoder = png_decode
    return _decoder or None


def available() -> bool:
    """True when the fast path can be taken (imagecodecs is installed)."""
    return _png_decode() is not None


def plan(data: bytes) -> tuple[str, int, int] | None:
    """(Pillow mode, width, height) when ``data`` is a PNG this module decodes, else None.

    Reads only chunk headers (and the keyword of text chunks); no pixel is decoded.
    """
    size = len(data)
    if size < 33 or not data.startswith(_SIGNATURE):
        return None
    length, kind = _CHUNK.unpack_from(data, 8)
    if kind != b"IHDR" or length != 13:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(
        ">IIBBBBB", data, 16
    )
    if depth != 8 or colour not in _MODES or compression or filtering or interlace:
        return None
    if not 0 < width * height <= MAX_PIXELS:
        return None
    pos = 33
    seen_idat = False
    while pos < size:
        if pos + 12 > size:
            return None
        length, kind = _CHUNK.unpack_from(data, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > size:
            return None
        if kind == b"IDAT":
            seen_idat = True
        elif kind == b"IEND":
            break
        elif seen_idat:
            return None  # only IEND may follow the image data (so IDATs are consecutive)
        elif kind in _REFUSED:
            return None
        elif kind in _TEXT:
            keyword = data[pos + 8 : pos + 8 + min(length, 80)].split(b"\0", 1)[0].lower()
            if b"exif" in keyword or b"xmp" in keyword:
                return None
        pos = end
    if not seen_idat:
        return None
    return _MODES[colour][0], width, height


def decode(data: bytes, img: Image.Image) -> Image.Image | None:
    """Decode ``data`` (already opened by Pillow as ``img``), or None to let Pillow do it.

    The result has the mode Pillow's decoder would give (L, LA, RGB or RGBA) and the same
    pixels; ``images._to_rgb`` then composites alpha exactly as on the Pillow path.
    ``MemoryError`` propagates (the caller reports ``TOO_LARGE``); any other failure of
    libpng returns None, so Pillow decides what the file is.
    """
    global decoded
    if img.format != "PNG":
        return None
    layout = plan(data)
    if layout is None:
        return None
    mode, width, height = layout
    if img.mode != mode or img.size != (width, height):
        return None
    png_decode = _png_decode()
    if png_decode is None:
        return None
    try:
        array = png_decode(data)
    except MemoryError:
        raise
    except Exception:  # any refusal by libpng: Pillow decides (and reports the error)
        return None
    channels = _CHANNELS[mode]
    expected = (height, width) if channels == 1 else (height, width, channels)
    if array.dtype != "uint8" or array.shape != expected or not array.flags.c_contiguous:
        return None
    from PIL import Image

    # L and RGBA share the array's memory; RGB and LA are copied into Pillow's layout.
    out = Image.frombuffer(mode, (width, height), array, "raw", mode, 0, 1)
    decoded += 1
    return out
