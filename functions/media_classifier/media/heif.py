"""HEIC/HEIF stills (the iPhone camera's default format) opened as Pillow images.

Why a module of its own: Pillow decodes AVIF itself but not HEVC-coded HEIF, so these
files go through libheif + libde265 (the ``pillow-heif`` wheel; its x265 encoder is
never called here). Not the decoder-only ``pi-heif``: its 1.4.0 wheel (libheif 1.23.0)
crashed the process on mutated files within seconds of fuzzing
(``tests/functions/media/test_fuzz_decode.py``), which this release answers with an error.
Everything after opening is the ordinary image path in
:mod:`.images` (pixel limit on the header, resize, the same model input); only what is
specific to HEIF is decided here:

* the **primary image** is classified. A HEIF file can hold several top-level images
  (bursts, brackets) and always names the one a viewer shows; it need not be the first;
* the container's rotation and mirroring (``irot``/``imir``) are applied by libheif
  while decoding, and the EXIF orientation tag (which on iPhones repeats them) is reset
  to 1 by ``pillow-heif``, so nothing is rotated twice;
* 10/12-bit HDR images are converted to 8 bits, what the model takes;
* thumbnails, depth maps and auxiliary images (alpha excepted) are not read at all. A
  thumbnail large enough for the model would be 10x faster than the primary image, but
  the model's top-1 label from it differed on 17 % of 161 photos (``bench/heic_thumbnails.py``,
  bench/README.md), so the primary image is what is classified;
* libheif decodes the tiles of a grid image (iPhones write 512x512 tiles) on as many
  threads as this instance has CPUs, not the host's.

* a file **cut short** is CORRUPT_MEDIA (:func:`missing_data`): libheif refuses a single
  picture whose data is cut, but decodes a grid whose last tiles are missing (an iPhone
  photo cut at a fifth came back 82 % green, the colour of YCbCr zeros) without an error;

``pillow_heif`` is imported on the first HEIF file, never at cold start (it is not
registered as a Pillow plugin either: AVIF stays with Pillow's own decoder).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from media_classifier.cpus import allocated_cpus
from media_classifier.errors import ErrorCode, MediaError

if TYPE_CHECKING:
    from PIL import Image

_plugin = None


def _heif_image_file() -> type:
    """``pillow_heif``'s Pillow image class, configured once per instance."""
    global _plugin
    if _plugin is None:
        try:
            from pillow_heif import options
            from pillow_heif.as_plugin import HeifImageFile
        except ImportError as exc:  # model_build's environment does not install it
            raise MediaError(
                ErrorCode.UNSUPPORTED_MEDIA, "HEIC/HEIF decoding is not installed here"
            ) from exc
        options.DECODE_THREADS = allocated_cpus()
        options.THUMBNAILS = False
        options.DEPTH_IMAGES = False
        options.AUX_IMAGES = False
        _plugin = HeifImageFile
    return _plugin


def open_heif(data: bytes) -> Image.Image:
    """Open (not decode) the primary image of a HEIC/HEIF file.

    Raises ``SyntaxError`` like Pillow's own openers when libheif cannot read the
    container (``images.open_image`` reports CORRUPT_MEDIA); the pixels are decoded by
    ``load()``, after the caller has checked the declared size.
    """
    return _heif_image_file()(io.BytesIO(data))


#: Item references that make a derived picture out of others (grid tiles, overlays, iden).
_DERIVED_FROM = b"dimg"


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO BMFF boxes in ``data[start:end]``."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            if start + 16 > end:
                return
            size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        if size < header:
            return
        yield kind, start + header, min(start + size, end)
        start += size


def _uint(data: bytes, pos: int, size: int) -> tuple[int, int]:
    """An unsigned big-endian integer of 0, 4 or 8 bytes at ``pos``; and the next position."""
    if size == 0:
        return 0, pos
    fmt = {4: ">I", 8: ">Q", 2: ">H"}[size]
    return struct.unpack_from(fmt, data, pos)[0], pos + size


def _item_ends(data: bytes, start: int, end: int) -> dict[int, int]:
    """item id -> end offset of its furthest file extent, from the ``iloc`` box payload.

    Extents in the meta box's ``idat`` or in another item (construction methods 1 and 2),
    and those that run "to the end of the file" (length 0), are not file positions to check.
    """
    version = data[start]
    pos = start + 4
    sizes = (data[pos] >> 4, data[pos] & 15, data[pos + 1] >> 4, data[pos + 1] & 15)
    offset_size, length_size, base_size, index_size = sizes
    pos += 2
    count, pos = _uint(data, pos, 2 if version < 2 else 4)
    ends: dict[int, int] = {}
    for _ in range(count):
        item, pos = _uint(data, pos, 2 if version < 2 else 4)
        method = 0
        if version in (1, 2):
            method = struct.unpack_from(">H", data, pos)[0] & 15
            pos += 2
        pos += 2  # data_reference_index
        base, pos = _uint(data, pos, base_size)
        extents, pos = _uint(data, pos, 2)
        for _ in range(extents):
            if version in (1, 2) and index_size:
                pos += index_size
            offset, pos = _uint(data, pos, offset_size)
            length, pos = _uint(data, pos, length_size)
            if method == 0 and length:
                ends[item] = max(ends.get(item, 0), base + offset + length)
        if pos > end:
            raise ValueError("iloc box overruns its size")
    return ends


def _derived_from(data: bytes, start: int, end: int) -> dict[int, list[int]]:
    """item id -> the ids it is derived from (``dimg`` references of the ``iref`` box)."""
    id_size = 2 if data[start] == 0 else 4
    refs: dict[int, list[int]] = {}
    for kind, pos, box_end in _boxes(data, start + 4, end):
        if kind != _DERIVED_FROM:
            continue
        source, pos = _uint(data, pos, id_size)
        count, pos = _uint(data, pos, 2)
        targets = [_uint(data, pos + i * id_size, id_size)[0] for i in range(count)]
        if pos + count * id_size > box_end:
            raise ValueError("iref box overruns its size")
        refs.setdefault(source, []).extend(targets)
    return refs


def missing_data(data: bytes) -> str | None:
    """Why the primary image's coded data is not all in ``data`` (cut short), or None.

    Reads the ``meta`` box's ``pitm``, ``iref`` and ``iloc``: the primary image and every
    image it is derived from (a grid's tiles) must have all their bytes inside the file.
    The thumbnails are not required (one that cannot be decoded is not chosen). A
    structure this reader does not follow answers None: libheif has already opened the
    file, and decides.
    """
    try:
        meta = next(((s, e) for k, s, e in _boxes(data, 0, len(data)) if k == b"meta"), None)
        if meta is None:
            return None
        boxes = {k: (s, e) for k, s, e in _boxes(data, meta[0] + 4, meta[1])}
        if b"pitm" not in boxes or b"iloc" not in boxes:
            return None
        pitm = boxes[b"pitm"][0]
        primary = _uint(data, pitm + 4, 2 if data[pitm] == 0 else 4)[0]
        ends = _item_ends(data, *boxes[b"iloc"])
        refs = _derived_from(data, *boxes[b"iref"]) if b"iref" in boxes else {}
    except (struct.error, IndexError, KeyError, ValueError):
        return None
    needed, furthest = [primary], 0
    seen: set[int] = set()
    while needed and len(seen) < 10_000:
        item = needed.pop()
        if item in seen:
            continue
        seen.add(item)
        furthest = max(furthest, ends.get(item, 0))
        needed.extend(refs.get(item, ()))
    if furthest > len(data):
        return (
            f"the HEIF file ends before its image data does ({len(data):,} of {furthest:,} bytes)"
        )
    return None
