"""Media type detection from the bytes themselves.

Why: clients send wrong content types (``application/octet-stream``, ``image/jpg``,
a JPEG labelled ``video/mp4``). The first few KiB of a file say what it really is,
so every entry point decides the decoder from :func:`sniff`, never from metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from media_classifier.errors import ErrorCode, MediaError

#: How many leading bytes :func:`sniff` needs; callers read at least this much.
HEAD_BYTES = 4096

Kind = Literal["image", "video"]


@dataclass(frozen=True)
class MediaType:
    """What a file is: the decoder family (``kind``) and a canonical MIME type."""

    kind: Kind
    mime: str


# ISO base media brands (the ``ftyp`` box) of still images, not videos: HEIF with HEVC
# (iPhone photos), AVIF (AV1), and the generic HEIF brands whose codec the compatible
# brands name. Image sequences (``hevc``, ``msf1``, ``avis``) are images too: AVIF
# animations are sampled like animated GIFs, a HEIF sequence by its primary image.
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"mif2", b"mif3"}
# Brands of audio-only ISO files: refused up front with a precise message.
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}


def _ftyp_brands(head: bytes) -> tuple[bytes, set[bytes]]:
    """Major brand and compatible brands of the leading ``ftyp`` box (within ``head``)."""
    size = int.from_bytes(head[0:4], "big")
    end = min(len(head), size if 16 <= size <= 4096 else 16)
    return head[8:12], {head[i : i + 4] for i in range(16, end - 3, 4)}


def iso_image_mime(head: bytes) -> str | None:
    """``image/heic``, ``image/heif`` or ``image/avif`` for a HEIF-family still, else None.

    Decided by the major brand, then by the compatible brands (a ``mif1`` file says
    ``avif`` or ``heic`` there). AVIF wins over HEVC when a file lists both: Pillow
    decodes AV1 itself, and libheif here has no AV1 decoder.
    """
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    major, compatible = _ftyp_brands(head)
    if major in _AVIF_BRANDS:
        return "image/avif"
    if major in _HEIC_BRANDS:
        return "image/heic"
    if major in _HEIF_BRANDS:
        if compatible & _AVIF_BRANDS:
            return "image/avif"
        return "image/heic" if compatible & _HEIC_BRANDS else "image/heif"
    return None


def _iso_media(head: bytes) -> MediaType:
    image = iso_image_mime(head)
    if image:
        return MediaType("image", image)
    brand = head[8:12]
    if brand in _AUDIO_BRANDS:
        raise MediaError(ErrorCode.UNSUPPORTED_MEDIA, "audio files are not supported")
    if brand == b"qt  ":
        return MediaType("video", "video/quicktime")
    if brand.startswith(b"3g"):
        return MediaType("video", "video/3gpp")
    return MediaType("video", "video/mp4")


def _is_mpeg_ts(head: bytes) -> bool:
    return len(head) >= 188 * 3 and all(head[i] == 0x47 for i in range(0, 188 * 3, 188))


def _text_like(head: bytes) -> str | None:
    """Name a common non-media text format, for a helpful error message."""
    sample = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if sample.startswith(b"<svg") or (sample.startswith(b"<?xml") and b"<svg" in head.lower()):
        return "SVG"
    if sample.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    return None


def sniff(head: bytes) -> MediaType:
    """Classify a file by its leading bytes (at least :data:`HEAD_BYTES` when available).

    Raises :class:`MediaError` with ``EMPTY`` for zero bytes and ``UNSUPPORTED_MEDIA``
    for anything that is not an image or video we decode, naming the format when known.
    """
    if not head:
        raise MediaError(ErrorCode.EMPTY, "the file is empty (0 bytes)")
    if head.startswith(b"\xff\xd8\xff"):
        return MediaType("image", "image/jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaType("image", "image/png")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return MediaType("image", "image/gif")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return MediaType("image", "image/webp")
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return MediaType("video", "video/x-msvideo")
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        raise MediaError(ErrorCode.UNSUPPORTED_MEDIA, "audio files are not supported")
    if head.startswith(b"BM") and len(head) >= 18:
        return MediaType("image", "image/bmp")
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return MediaType("image", "image/tiff")
    if head.startswith(b"\x00\x00\x01\x00") and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return MediaType("image", "image/x-icon")
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _iso_media(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        is_webm = b"webm" in head[:64]
        return MediaType("video", "video/webm" if is_webm else "video/x-matroska")
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return MediaType("video", "video/mpeg")
    if _is_mpeg_ts(head):
        return MediaType("video", "video/mp2t")
    if head.startswith(b"FLV\x01"):
        return MediaType("video", "video/x-flv")
    if head.startswith(b"OggS"):
        # Ogg holds Theora video or Vorbis/Opus audio; the video probe tells them apart.
        return MediaType("video", "video/ogg")
    if head.startswith((b"ID3", b"fLaC", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")):
        raise MediaError(ErrorCode.UNSUPPORTED_MEDIA, "audio files are not supported")
    if head.startswith(b"%PDF"):
        raise MediaError(ErrorCode.UNSUPPORTED_MEDIA, "PDF documents are not supported")
    if head.startswith(b"PK\x03\x04"):
        raise MediaError(ErrorCode.UNSUPPORTED_MEDIA, "ZIP archives are not supported")
    name = _text_like(head)
    if name:
        raise MediaError(ErrorCode.UNSUPPORTED_MEDIA, f"{name} files are not supported")
    raise MediaError(
        ErrorCode.UNSUPPORTED_MEDIA,
        "not a supported image or video (JPEG, PNG, HEIC, WebP, AVIF, GIF, BMP, TIFF, MP4, MOV,"
        " WebM, ...)",
    )
