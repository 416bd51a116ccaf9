"""Images whose data ends before their picture does: one rule, and the checks it needs.

The rule (README, "Truncated images"): a still image is classified only if its data
covers every pixel its header declares; otherwise it is ``CORRUPT_MEDIA``, never a label
for whatever fill the decoder put in the gap. Animations already follow it (a frame
that cannot be read in full makes the whole animation ``CORRUPT_MEDIA``, ``video.py``).

Why checks are needed at all: most decoders raise when the data runs out, and those
errors already end as ``CORRUPT_MEDIA`` (Pillow's "image file is truncated" for a cut
JPEG, PNG, GIF, BMP or TIFF; libwebp and libavif refuse cut files; libheif refuses a cut
single-picture HEIC but fills a grid's missing tiles, which ``heif.missing_data`` catches
first). Two more fill the gap in silently:

* libjpeg, when a marker arrives before a scan's entropy-coded data is complete (an end
  marker after a cut, or a header that claims more pixels than the data holds), warns,
  which Pillow ignores, and decodes every missing block as zeros: uniform grey. A JPEG
  whose header claimed 7000x7000 over 64x64 of data came back ``done``, with a
  confident label for a grey square.
* Pillow's PNG decoder stops where the zlib stream ends: when it ends on a row
  boundary, the missing rows stay zero (black, or transparent) and no error is raised.
  libpng (:mod:`.png_fast`) refuses such files ("Not enough image data") and hands them
  to Pillow, which accepted them.

What is not caught: a gap of a few blocks at the very end of a JPEG (the last pixel
is then not the fill grey, or the 8 bytes the second decode appends complete it), and
a progressive or multi-scan JPEG whose first scan stops early yet holds more than one
bit per block (libjpeg reads every scan before it outputs a pixel, so no decode shows
where the data stopped; telling would need a Huffman decoder in Python). Cameras
write baseline JPEGs; a cut file without its end marker is refused by Pillow anyway.

The checks, cheapest first, none of which can refuse a complete file:

* :func:`jpeg_shortfall`, before decoding, from the markers alone: every block of a
  Huffman-coded scan takes at least one bit per coded part (two in a baseline scan,
  one in a progressive DC scan), so a scan whose data is shorter than that cannot be
  complete; and every colour component must be sent in some scan.
* :func:`jpeg_cut_short`, after decoding, only when the last pixel is exactly the grey
  libjpeg fills with (:func:`jpeg_grey_corner`) or the file is small: a single-scan
  JPEG is decoded again from its entropy-coded data alone, with nothing after it, so
  that libjpeg runs out of data instead of meeting a marker, and Pillow reports the
  truncation it hid.
* :func:`png_rows_missing`, after Pillow decoded a PNG whose last row is zero bytes
  (or any interlaced PNG, whose passes leave gaps elsewhere): the zlib stream is
  inflated again and its length compared with what the header implies.
"""

from __future__ import annotations

import io
import math
import re
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# --- JPEG ------------------------------------------------------------------------------

#: Huffman-coded frames: baseline, extended, progressive. Arithmetic coding can code a
#: block in less than a bit, and lossless or hierarchical frames are not decoded by Pillow.
_HUFFMAN_SOF = {0xC0: "baseline", 0xC1: "baseline", 0xC2: "progressive"}
_ANY_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: The marker that ends a scan's entropy-coded data: 0xFF not followed by a stuffed
#: 0x00, a restart marker or a fill byte (as in :mod:`.jpeg_progressive`).
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
#: Zero bytes appended after the entropy-coded data for :func:`jpeg_cut_short`:
#: libjpeg-turbo fills its bit buffer to 57 bits ahead of the symbol it decodes, so a
#: complete scan needs up to 8 bytes after its last code. In a scan that is short,
#: those 64 bits decode as at most 16 more (junk) blocks: shorter gaps go unnoticed.
_LOOKAHEAD = b"\x00" * 8
#: Files up to this size get the second decode whatever their last pixel: it costs
#: well under a millisecond, and in an image of a few blocks the gap need not reach
#: the last pixel (the block where the data stops decodes as junk, not as grey).
SMALL_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class JpegScan:
    """One scan: its components and spectral selection, and where its coded data lies."""

    components: tuple[int, ...]
    spectral_start: int
    approx_high: int
    data_start: int
    data_end: int


@dataclass(frozen=True)
class JpegLayout:
    """The frame header and the scans before the first end marker (or the end of data)."""

    coding: str  # "baseline", "progressive", or "other" (not checked)
    width: int
    height: int
    components: tuple[tuple[int, int, int], ...]  # (id, horizontal, vertical sampling)
    scans: tuple[JpegScan, ...]

    def blocks(self, scan: JpegScan) -> int:
        """The 8x8 blocks a scan codes: whole MCUs when interleaved, else the component's."""
        hmax = max(h for _, h, _ in self.components)
        vmax = max(v for _, _, v in self.components)
        sampling = {cid: (h, v) for cid, h, v in self.components}
        if len(scan.components) == 1:
            h, v = sampling[scan.components[0]]
            width = math.ceil(self.width * h / hmax)
            height = math.ceil(self.height * v / vmax)
            return math.ceil(width / 8) * math.ceil(height / 8)
        mcus = math.ceil(self.width / (8 * hmax)) * math.ceil(self.height / (8 * vmax))
        return mcus * sum(sampling[c][0] * sampling[c][1] for c in scan.components)


def jpeg_layout(data: bytes) -> JpegLayout | None:
    """The frame and scans of a JPEG from its markers, or None if it is not one we check.

    None for anything unexpected (a malformed segment, a second frame, a height given
    later by a DNL marker): the decoder then reports what it reports, as before.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, size = 2, len(data)
    frame: tuple[str, int, int, tuple[tuple[int, int, int], ...]] | None = None
    scans: list[JpegScan] = []
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > size:
            return None
        if marker in _ANY_SOF:
            if frame is not None or length < 8:
                return None
            height, width, count = struct.unpack_from(">HHB", data, pos + 5)
            if not (height and width and count >= 1 and length == 8 + 3 * count):
                return None
            components = tuple(
                (data[pos + 10 + 3 * i], data[pos + 11 + 3 * i] >> 4, data[pos + 11 + 3 * i] & 15)
                for i in range(count)
            )
            if any(not (1 <= h <= 4 and 1 <= v <= 4) for _, h, v in components):
                return None
            frame = (_HUFFMAN_SOF.get(marker, "other"), width, height, components)
        elif marker == 0xDA:
            if frame is None or length < 6:
                return None
            count = data[pos + 4]
            if not 1 <= count <= 4 or length != 6 + 2 * count:
                return None
            ids = tuple(data[pos + 5 + 2 * i] for i in range(count))
            known = {cid for cid, _, _ in frame[3]}
            if not set(ids) <= known:
                return None
            spectral_start = data[end - 3]
            approx_high = data[end - 1] >> 4
            found = _SCAN_END.search(data, end)
            data_end = found.start() if found else size
            scans.append(JpegScan(ids, spectral_start, approx_high, end, data_end))
            pos = data_end
            continue
        pos = end
    if frame is None:
        return None
    coding, width, height, components = frame
    return JpegLayout(coding, width, height, components, tuple(scans))


def _coded_bits(data: bytes, scan: JpegScan) -> int:
    """Bits of entropy-coded data a scan holds, at most.

    Every 0xFF in coded data is half of a two-byte pair that holds at most one byte of
    data (a stuffed 0xFF 0x00, or a restart marker that holds none), so one byte per
    0xFF is not data. (Counting single bytes is ~10x faster than counting pairs.)
    """
    start, end = scan.data_start, scan.data_end
    return 8 * max(0, end - start - data.count(b"\xff", start, end))


def jpeg_shortfall(data: bytes, layout: JpegLayout | None) -> str | None:
    """Why this JPEG's data cannot hold the picture its header declares, or None.

    A lower bound only (no false positives): a baseline scan codes each block with at
    least two Huffman codes (DC, then AC or end-of-block), a progressive DC scan with
    at least one bit; progressive AC scans can code thousands of empty blocks in a
    few bits and are not counted.
    """
    if layout is None or layout.coding == "other":
        return None
    declared = f"{layout.width}x{layout.height}"
    for scan in layout.scans:
        if layout.coding == "baseline":
            per_block = 2
        elif scan.spectral_start == 0:
            per_block = 1
        else:
            continue
        needed = layout.blocks(scan) * per_block
        held = _coded_bits(data, scan)
        if held < needed:
            return (
                f"the JPEG's data ends before its picture does: the header declares"
                f" {declared} pixels, which take at least {math.ceil(needed / 8):,} bytes of"
                f" coded data, and the file holds {held // 8:,}"
            )
    first_dc = {
        cid
        for scan in layout.scans
        for cid in scan.components
        if scan.spectral_start == 0 and (layout.coding == "baseline" or scan.approx_high == 0)
    }
    missing = len(layout.components) - len(first_dc)
    if missing > 0:
        return (
            f"the JPEG's data ends before its picture does: {missing} of its"
            f" {len(layout.components)} colour components are never sent"
        )
    return None


def jpeg_grey_corner(img: Image.Image) -> bool:
    """True if the last pixel is the grey libjpeg decodes a missing block to.

    A block of zero coefficients is 128 in every component: RGB (128, 128, 128), L 128,
    and 127 in each channel of Adobe's inverted CMYK. Blocks are decoded in order, so
    data that ends early always leaves the last one missing.
    """
    value = img.getpixel((img.width - 1, img.height - 1))
    bands = value if isinstance(value, tuple) else (value,)
    return len(set(bands)) == 1 and bands[0] in (127, 128)


def jpeg_cut_short(data: bytes, layout: JpegLayout | None, draft: tuple[int, int] | None) -> bool:
    """True if a single-scan JPEG's coded data ends before its last block (see module doc).

    Decodes ``data`` again (at the ``draft`` size the caller used, so the second pass
    costs what the first did) from its headers and entropy-coded data alone: libjpeg
    then runs out of data where it met a marker before, and Pillow raises "image file
    is truncated". Multi-scan files (progressive, or baseline with a scan per
    component) are left to :func:`jpeg_shortfall`: libjpeg reads all their scans
    before it outputs a pixel, so it cannot be made to stop at the missing data.
    """
    if layout is None or layout.coding != "baseline" or len(layout.scans) != 1:
        return False
    scan = layout.scans[0]
    if len(scan.components) != len(layout.components):
        return False
    from PIL import Image

    try:
        probe = Image.open(io.BytesIO(data[: scan.data_end] + _LOOKAHEAD))
        if draft is not None:
            probe.draft("RGB", draft)
        probe.load()
    except OSError as exc:
        return "truncated" in str(exc)  # Pillow: "image file is truncated (...)"
    except Exception:  # any other failure of the probe gives no verdict
        return False
    return False


# --- PNG -------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: IHDR colour type -> samples per pixel.
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7: (first column, first row, column step, row step) of each pass.
_ADAM7: tuple[tuple[int, int, int, int], ...] = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
#: Inflate at most this much at a time while counting (the output is thrown away).
_INFLATE_CHUNK = 1 << 20


def png_expected_bytes(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """Bytes the zlib stream of a PNG with this header inflates to (filter bytes included)."""
    bits = depth * _PNG_SAMPLES[colour]
    if not interlace:
        return height * (1 + math.ceil(width * bits / 8))
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        cols = max(0, math.ceil((width - x0) / dx))
        rows = max(0, math.ceil((height - y0) / dy))
        if cols and rows:
            total += rows * (1 + math.ceil(cols * bits / 8))
    return total


def _png_header_and_data(data: bytes) -> tuple[tuple[int, ...], list[memoryview]] | None:
    """(width, height, depth, colour, interlace) and the IDAT payloads, or None."""
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    header = struct.unpack_from(">IIBBBBB", data, 16)
    if header[3] not in _PNG_SAMPLES:
        return None
    view = memoryview(data)
    pos, idat = 33, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            idat.append(view[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    return (header[0], header[1], header[2], header[3], header[6]), idat


def png_inflated_size(parts: list[memoryview], enough: int) -> int:
    """How many bytes the concatenated zlib stream inflates to, counting up to ``enough``."""
    inflater = zlib.decompressobj()
    total = 0
    try:
        for part in parts:
            pending = bytes(part)
            while pending and total < enough and not inflater.eof:
                total += len(inflater.decompress(pending, _INFLATE_CHUNK))
                pending = inflater.unconsumed_tail
            if total >= enough or inflater.eof:
                break
    except zlib.error:
        pass  # what inflated before the damage is all the stream holds
    return total


def png_rows_missing(data: bytes, img: Image.Image) -> str | None:
    """Why a PNG that Pillow decoded is missing rows, or None (see module doc).

    Only looked into when the image could be incomplete: its last row is zero bytes
    (Pillow leaves rows it never received zero), or it is interlaced (its passes leave
    gaps anywhere). The stream is then inflated again, which costs about what Pillow's
    own inflating did; photos end in a non-zero row and skip it.
    """
    parsed = _png_header_and_data(data)
    if parsed is None:
        return None
    (width, height, depth, colour, interlace), idat = parsed
    if not interlace:
        last_row = img.crop((0, img.height - 1, img.width, img.height)).tobytes()
        if last_row.count(0) != len(last_row):
            return None
    expected = png_expected_bytes(width, height, depth, colour, interlace)
    held = png_inflated_size(idat, expected)
    if held >= expected:
        return None
    share = held / expected if expected else 0.0
    return (
        f"the PNG's data ends before its picture does: the header declares {width}x{height}"
        f" pixels and the data holds {share:.0%} of them"
    )
