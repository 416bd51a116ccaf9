"""Progressive JPEGs at 1/8 scale: give libjpeg only the scans the small image depends on.

Why: a progressive JPEG (what web tools, CMSs and mozjpeg write; phone cameras write
baseline) spreads each block's coefficients over ~10 scans, and libjpeg must read all
of them into a whole-image coefficient buffer before it outputs a row: a 12 MP
progressive photo took ~150 ms to decode even at draft scale 1/8, 4x a baseline one.
At 1/8 scale each 8x8 block of a full-resolution component becomes one pixel computed
from its DC coefficient alone, so the AC scans of those components (~90 % of the
bytes) change nothing in the output. :func:`reduce` rewrites the file without them:

* every DC scan is kept (first and refinement scans), with all tables and markers;
* AC scans are kept for subsampled components (4:2:0 chroma): libjpeg-turbo scales
  those up with a 2x2 IDCT at 1/8, which reads AC coefficients;
* each component whose AC scans were dropped gets one synthetic AC scan saying "all
  zero" (a run of end-of-band codes through a small Huffman table of our own), after
  a ``DRI`` of 0. Without it libjpeg would see unknown AC coefficients and apply its
  progressive block smoothing, which changes the DC-derived pixels.

The decoded pixels are identical to decoding the whole file at 1/8
(``tests/functions/media/test_jpeg_progressive.py`` compares them over subsamplings, sizes,
greyscale, restart intervals and EXIF orientation). Anything unexpected (arithmetic
coding, a missing end marker, a malformed segment, more than one frame) returns None
and the caller decodes the original file as before, so a hostile file can only lose
the speed-up, never change the error it gets.
"""

from __future__ import annotations

import re
import struct

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
_SOF2, _SOS = 0xC2, 0xDA
#: Frame types this module refuses (every SOF but the progressive Huffman one).
_OTHER_SOF = {0xC0, 0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: The next marker after entropy-coded data: 0xFF not followed by a stuffed 0x00, a
#: restart marker (part of the scan) or another 0xFF (a fill byte).
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
#: Largest run one end-of-band-run code covers (EOB14: 2**14 + 14 extra bits).
_MAX_EOB_RUN = 32767
#: AC Huffman table 3 with the 15 end-of-band-run symbols EOB0..EOB14 (0x00..0xE0), all
#: of code length 4, so symbol EOBr has code r.
_EOB_TABLE_ID = 3
_EOB_DHT_BODY = bytes([0x10 | _EOB_TABLE_ID, 0, 0, 0, 15] + [0] * 12) + bytes(
    r << 4 for r in range(15)
)


class _Bits:
    """MSB-first bit writer with JPEG byte stuffing (0xFF is followed by 0x00)."""

    def __init__(self) -> None:
        self.acc = 0
        self.count = 0
        self.out = bytearray()

    def put(self, value: int, nbits: int) -> None:
        self.acc = (self.acc << nbits) | value
        self.count += nbits
        while self.count >= 8:
            self.count -= 8
            byte = (self.acc >> self.count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)
        self.acc &= (1 << self.count) - 1

    def finish(self) -> bytes:
        """Pad the last byte with 1-bits, as the standard asks."""
        if self.count:
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)
        return bytes(self.out)


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def _zero_ac_scan(component: int, blocks: int) -> bytes:
    """A first AC scan (coefficients 1-63, no successive approximation) of all zeros."""
    bits = _Bits()
    while blocks:
        run = min(blocks, _MAX_EOB_RUN)
        r = run.bit_length() - 1
        bits.put(r, 4)  # the code of symbol EOBr
        if r:
            bits.put(run - (1 << r), r)
        blocks -= run
    header = bytes([1, component, _EOB_TABLE_ID, 1, 63, 0])
    return _segment(_SOS, header) + bits.finish()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def reduce(data: bytes) -> bytes | None:
    """``data`` without the AC scans a 1/8-scale decode ignores, or None (see module doc).

    Only for progressive Huffman JPEGs; the caller decodes the result at scale 1/8.
    """
    if not data.startswith(_SOI):
        return None
    out = [_SOI]
    pos, size = 2, len(data)
    #: (width, height, components as (id, h, v), largest h, largest v) of the SOF2 segment.
    frame: tuple[int, int, list[tuple[int, int, int]], int, int] | None = None
    keep_ac: set[int] = set()
    #: Component -> precision still missing per AC coefficient (index 1..63), from the
    #: scans being dropped: -1 never sent, n > 0 the low n bits still to come, 0 exact.
    missing: dict[int, list[int]] = {}
    while True:
        if pos + 2 > size or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI[1]:
            break
        if marker in _OTHER_SOF or (0xD0 <= marker <= 0xD8) or marker == 0x01 or pos + 4 > size:
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > size:
            return None
        if marker == _SOF2:
            if frame is not None or length < 8:
                return None
            height, width, count = struct.unpack_from(">HHB", data, pos + 5)
            if not (height and width and 1 <= count <= 4 and length == 8 + 3 * count):
                return None
            components = []
            for i in range(count):
                cid, sampling = data[pos + 10 + 3 * i], data[pos + 11 + 3 * i]
                h, v = sampling >> 4, sampling & 15
                if not (1 <= h <= 4 and 1 <= v <= 4):
                    return None
                components.append((cid, h, v))
            if len({c[0] for c in components}) != count:
                return None
            hmax, vmax = max(c[1] for c in components), max(c[2] for c in components)
            keep_ac = {cid for cid, h, v in components if h < hmax or v < vmax}
            frame = (width, height, components, hmax, vmax)
        if marker != _SOS:
            out.append(data[pos:end])
            pos = end
            continue
        if frame is None or length < 6:
            return None
        count = data[pos + 4]
        if not 1 <= count <= 4 or length != 6 + 2 * count:
            return None
        ids = [data[pos + 5 + 2 * i] for i in range(count)]
        spectral_start, spectral_end, approx = data[pos + 5 + 2 * count : end]
        if spectral_start > spectral_end or spectral_end > 63:
            return None
        found = _MARKER.search(data, end)
        if found is None:
            return None  # no end marker: truncated, let the normal path report it
        scan_end = found.start()
        if spectral_start == 0:
            out.append(data[pos:scan_end])
        elif count != 1 or ids[0] not in {c[0] for c in frame[2]}:
            return None
        elif ids[0] in keep_ac:
            out.append(data[pos:scan_end])
        else:
            bits = missing.setdefault(ids[0], [-1] * 64)
            for k in range(spectral_start, spectral_end + 1):
                bits[k] = approx & 15  # what remains unknown after this scan
        pos = scan_end
    if frame is None:
        return None
    width, height, components, hmax, vmax = frame
    synthetic = [c for c in components if c[0] not in keep_ac]
    if not synthetic:
        return None
    for cid, _, _ in synthetic:
        # Exact only when the dropped scans brought every AC coefficient to full
        # precision: otherwise libjpeg smooths the original and would not smooth ours.
        if any(missing.get(cid, [-1] * 64)[1:]):
            return None
    out.append(_segment(0xC4, _EOB_DHT_BODY))
    out.append(_segment(0xDD, b"\x00\x00"))  # no restart markers in the scans below
    for cid, h, v in synthetic:
        blocks_wide = _ceil_div(_ceil_div(width * h, hmax), 8)
        blocks_high = _ceil_div(_ceil_div(height * v, vmax), 8)
        out.append(_zero_ac_scan(cid, blocks_wide * blocks_high))
    out.append(_EOI)
    return b"".join(out)
