"""Image decoding and resizing: the one path from bytes to model input.

Serving, evaluation (``model_build evaluate``), the benchmark and the demo all call
:func:`prepare_image` or its two halves, so a model is measured exactly as it is served.
Why each step is here:

* the pixel limit is checked on the header before any pixel is decoded, so a
  decompression bomb costs nothing;
* JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale: a 12 MP photo
  bound for a 224 px model never exists at full size in memory; a progressive JPEG
  at 1/8 is decoded from its DC scans only (:mod:`.jpeg_progressive`, same pixels,
  3-5x faster);
* EXIF orientation is applied, so a phone photo is classified the way it is seen;
* HEIC/HEIF (iPhone photos) is opened by :mod:`.heif` (libheif), AVIF by Pillow; both
  then follow the same path as every other format;
* a common still PNG is decoded by libpng (:mod:`.png_fast`, 2-2.5x faster than
  Pillow's decoder, same pixels); everything else by Pillow;
* every Pillow mode (palette, alpha, CMYK, 16-bit, greyscale) ends as 8-bit RGB,
  alpha composited on white like a viewer shows it;
* an image whose data ends before its picture does is CORRUPT_MEDIA, never labels for
  the fill a decoder put in the gap (:mod:`.truncation`: libjpeg and Pillow's PNG
  decoder fill silently, the others raise).
"""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
from typing import TYPE_CHECKING

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.media import heif, jpeg_progressive, png_fast, truncation
from media_classifier.media.sniff import HEAD_BYTES, iso_image_mime

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

RESIZE_POLICIES = ("center_crop", "squash")
#: ``center_crop`` resizes so the crop is this fraction of the short side (torchvision's 224/256).
CROP_FRACTION = 0.875
_ORIENTATION_TAG = 0x0112
#: What Pillow's decoders raise on malformed input (found by
#: tests/functions/media/test_fuzz_decode.py: a truncated GIF frame header raises
#: ``struct.error`` or ``IndexError``, APNG ``EOFError``;
#: libheif's decoding errors that have no closer type arrive as ``RuntimeError``).
DECODE_ERRORS = (
    OSError,
    RuntimeError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    ZeroDivisionError,
    struct.error,
)
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
#: The declared size in Pillow's decompression-bomb messages.
_BOMB_PIXELS = re.compile(r"Image size \((\d+) pixels\)")


def _pil() -> tuple:
    """Import Pillow lazily: deploy discovery imports ``main.py`` with a time limit."""
    from PIL import Image, ImageOps

    return Image, ImageOps


def too_many_pixels(exc: Exception, max_pixels: int, what: str) -> MediaError:
    """TOO_LARGE for Pillow's decompression-bomb guard, quoting this project's limit.

    Why not Pillow's message: it quotes Pillow's own guard (178,956,970 pixels), which
    is not the limit a user can read about or change (``MAX_IMAGE_PIXELS``). Pillow's
    guard only fires first when it is the lower one (its warning, made an error here,
    is at 89,478,485 pixels): then the message says so, rather than blame our limit.
    """
    image_mod, _ = _pil()
    found = _BOMB_PIXELS.search(str(exc))
    declared = int(found.group(1)) if found else None
    shown = f"{declared:,} pixels" if declared is not None else "more pixels than allowed"
    decoder_limit = image_mod.MAX_IMAGE_PIXELS
    if declared is not None and declared <= max_pixels and decoder_limit is not None:
        return MediaError(
            ErrorCode.TOO_LARGE,
            f"{what} declares {shown}; the decoder accepts at most {decoder_limit:,}"
            f" (MAX_IMAGE_PIXELS, {max_pixels:,}, is set above that)",
        )
    return MediaError(ErrorCode.TOO_LARGE, f"{what} declares {shown}; the limit is {max_pixels:,}")


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open (not decode) an image and refuse it if its declared size exceeds ``max_pixels``."""
    image_mod, _ = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_mod.DecompressionBombWarning)
            if iso_image_mime(data[:HEAD_BYTES]) in ("image/heic", "image/heif"):
                img = heif.open_heif(data)
            else:
                img = image_mod.open(io.BytesIO(data))
    except (image_mod.DecompressionBombError, image_mod.DecompressionBombWarning) as exc:
        raise too_many_pixels(exc, max_pixels, "the image") from exc
    except image_mod.UnidentifiedImageError as exc:
        raise MediaError(ErrorCode.CORRUPT_MEDIA, "the image header cannot be read") from exc
    except DECODE_ERRORS as exc:  # e.g. Pillow's AVIF opener raises RuntimeError
        raise MediaError(ErrorCode.CORRUPT_MEDIA, f"the image cannot be read: {exc}") from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        raise MediaError(ErrorCode.CORRUPT_MEDIA, f"the image declares a size of {width}x{height}")
    if width * height > max_pixels:
        raise MediaError(
            ErrorCode.TOO_LARGE,
            f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}",
        )
    return img


#: Formats whose extra frames are moments in time. Multi-page TIFF, MPO (a phone's
#: stereo/depth JPEG) and ICO also have "frames", but they are pages or variants of
#: one picture: those are classified by their first frame, as still images; a HEIF
#: file's several images (bursts, brackets) by its primary image.
ANIMATED_FORMATS = ("GIF", "WEBP", "PNG", "AVIF")


def is_animated(img: Image.Image) -> bool:
    """True for GIF/WebP/PNG/AVIF files with more than one frame (treated as videos)."""
    if img.format not in ANIMATED_FORMATS:
        return False
    try:  # Pillow reads the frame headers here: a broken second frame fails now
        return bool(getattr(img, "is_animated", False)) and getattr(img, "n_frames", 1) > 1
    except DECODE_ERRORS as exc:
        raise MediaError(ErrorCode.CORRUPT_MEDIA, f"the animation cannot be read: {exc}") from exc


def _draft_request(img: Image.Image, size: tuple[int, int], policy: str) -> tuple[int, int]:
    """The smallest decoded (width, height) that still resizes to ``size`` without upscaling."""
    height, width = size
    orientation = img.getexif().get(_ORIENTATION_TAG, 1) if img.format == "JPEG" else 1
    if orientation in _TRANSPOSED_ORIENTATIONS:
        height, width = width, height
    if policy == "squash":
        return width, height
    src_w, src_h = img.size
    scale = max(width / src_w, height / src_h) / CROP_FRACTION
    return math.ceil(src_w * scale), math.ceil(src_h * scale)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    image_mod, _ = _pil()
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) greyscale: keep the top 8 bits of the used range.
        extrema = img.getextrema()  # (min, max) for a single-band image
        peak = extrema[1] if isinstance(extrema[1], int | float) else 1
        shift = 256 if peak > 255 else 1
        img = img.point(lambda v: v / shift).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        # Paste through the alpha mask onto a white RGB canvas: the same pixels as
        # alpha_composite, without its two extra full-size RGBA copies (a 50 MP RGBA
        # PNG peaked at 1,042 MiB that way, 1 GiB being the instance budget).
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        canvas = image_mod.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _draft_jpeg(img: Image.Image, request: tuple[int, int], data: bytes | None) -> Image.Image:
    """Set JPEG draft mode; a progressive file at scale 1/8 is re-opened from its DC scans.

    :mod:`.jpeg_progressive` explains why and when the pixels are the same. Whatever
    goes wrong on that path (a file it cannot reduce, a reduced file libjpeg refuses)
    falls back to ``img`` itself, which then decodes (or fails) as it always did.
    """
    image_mod, _ = _pil()
    img.draft("RGB", request)
    scale = getattr(img, "decoderconfig", ())[:1]  # (scale,) once JPEG draft mode is set
    if data is None or not img.info.get("progressive") or scale != (8,):
        return img
    reduced = jpeg_progressive.reduce(data)
    if reduced is None:
        return img
    try:
        small = image_mod.open(io.BytesIO(reduced))
        small.draft("RGB", request)
        if small.size != img.size or small.mode != img.mode:
            return img
        small.load()
    except DECODE_ERRORS:
        return img
    return small


def _check_jpeg(data: bytes, layout: truncation.JpegLayout | None) -> None:
    short = truncation.jpeg_shortfall(data, layout)
    if short is not None:
        raise MediaError(ErrorCode.CORRUPT_MEDIA, short)


def _check_complete(img: Image.Image, data: bytes | None, request: tuple[int, int] | None) -> None:
    """CORRUPT_MEDIA if a decoder filled in data the file does not hold (:mod:`.truncation`).

    Each check looks deeper only when the decoded pixels could be such a fill (a last
    pixel of libjpeg's grey, a last PNG row of zeros) or the file is small enough for
    looking to cost nothing, so a photo costs one pixel read.
    """
    if data is None:
        return
    if img.format in ("JPEG", "MPO") and (
        len(data) <= truncation.SMALL_FILE_BYTES or truncation.jpeg_grey_corner(img)
    ):
        layout = truncation.jpeg_layout(data)
        _check_jpeg(data, layout)
        if truncation.jpeg_cut_short(data, layout, request):
            raise MediaError(
                ErrorCode.CORRUPT_MEDIA,
                "the JPEG's data ends before its picture does (its coded data stops early)",
            )
    elif img.format == "PNG":
        missing = truncation.png_rows_missing(data, img)
        if missing is not None:
            raise MediaError(ErrorCode.CORRUPT_MEDIA, missing)


def load_rgb(
    img: Image.Image,
    *,
    target: tuple[int, int] | None = None,
    policy: str = "squash",
    data: bytes | None = None,
) -> Image.Image:
    """Decode the first frame of an opened image to an upright RGB image.

    ``target`` (height, width) is the model size the result will be resized to; for
    JPEG it lets the decoder skip detail that the resize would throw away anyway.
    ``data``, the bytes ``img`` was opened from, lets a common still PNG take the
    faster libpng decoder (:mod:`.png_fast`), with the pixels Pillow would give.
    """
    _, image_ops = _pil()
    try:
        if data is not None and img.format == "PNG":
            fast = png_fast.decode(data, img)  # libpng refuses files that end early
            if fast is not None:
                return _to_rgb(fast)
        if data is not None and img.format == "JPEG" and img.info.get("progressive"):
            # Checked before decoding: libjpeg reads every scan of a progressive file
            # before it outputs a pixel, so no decode can show where the data stopped.
            _check_jpeg(data, truncation.jpeg_layout(data))
        if data is not None and img.format == "HEIF":
            # Checked before decoding: libheif fills a grid's missing tiles without an
            # error, and a thumbnail could otherwise stand in for a cut primary image.
            missing = heif.missing_data(data)
            if missing is not None:
                raise MediaError(ErrorCode.CORRUPT_MEDIA, missing)
        request = None
        if target is not None and img.format == "JPEG":
            request = _draft_request(img, target, policy)
            img = _draft_jpeg(img, request, data)
        if img.format != "HEIF":  # HEIF opens at its primary image, which may not be frame 0
            img.seek(0)
        img.load()
        _check_complete(img, data, request)
        if img.getexif().get(_ORIENTATION_TAG, 1) != 1:
            img = image_ops.exif_transpose(img)
        return _to_rgb(img)
    except MediaError:
        raise
    except MemoryError as exc:
        raise MediaError(ErrorCode.TOO_LARGE, "the image is too large to decode") from exc
    except DECODE_ERRORS as exc:
        raise MediaError(ErrorCode.CORRUPT_MEDIA, f"the image cannot be decoded: {exc}") from exc


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    target: tuple[int, int] | None = None,
    policy: str = "squash",
) -> Image.Image:
    """Bytes to an upright RGB image: :func:`open_image` (limits) then :func:`load_rgb`."""
    img = open_image(data, max_pixels=max_pixels)
    return load_rgb(img, target=target, policy=policy, data=data)


def fit_to_model(img: Image.Image, size: tuple[int, int], policy: str) -> np.ndarray:
    """Resize an RGB image to the model's (height, width) by its resize policy.

    ``squash`` stretches the whole image to the model size (models trained on
    whole, roughly square images); ``center_crop`` scales the image so that a
    centred window of ``size`` covers :data:`CROP_FRACTION` of it and resamples only
    that window, in one pass (the ImageNet evaluation convention).
    """
    import numpy as np

    image_mod, _ = _pil()
    height, width = size
    if policy == "squash":
        box = None
    elif policy == "center_crop":
        src_w, src_h = img.size
        scale = max(width / src_w, height / src_h) / CROP_FRACTION
        crop_w, crop_h = width / scale, height / scale
        left, top = (src_w - crop_w) / 2, (src_h - crop_h) / 2
        box = (left, top, left + crop_w, top + crop_h)
    else:
        raise ValueError(f"unknown resize policy {policy!r}; expected one of {RESIZE_POLICIES}")
    if img.size != (width, height) or box is not None:
        img = img.resize((width, height), image_mod.Resampling.BILINEAR, box=box, reducing_gap=3.0)
    array = np.asarray(img, dtype=np.uint8)
    if array.shape != (height, width, 3):
        raise ValueError(f"expected an RGB image, got an array of shape {array.shape}")
    return array


def prepare_image(
    data: bytes, size: tuple[int, int], policy: str, *, max_pixels: int
) -> np.ndarray:
    """Bytes to a model-ready uint8 HxWx3 array: :func:`decode_image` then :func:`fit_to_model`."""
    img = decode_image(data, max_pixels=max_pixels, target=size, policy=policy)
    return fit_to_model(img, size, policy)
