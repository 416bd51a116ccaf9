"""Media types come from the bytes, never from the client's content type."""

from __future__ import annotations

import pytest
from PIL import Image

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.media.sniff import MediaType, sniff
from tests.functions.conftest import encode

RED = Image.new("RGB", (8, 8), "red")


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
        ("ICO", "image/x-icon"),
        ("AVIF", "image/avif"),
    ],
)
def test_images_are_recognised_by_their_bytes(fmt: str, mime: str) -> None:
    media = sniff(encode(RED, fmt)[:4096])
    assert (media.kind, media.mime) == ("image", mime)


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime"),
        (b"\x00\x00\x00\x14ftyp3gp5\x00\x00\x00\x00", "video/3gpp"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "video/x-msvideo"),
        (b"\x00\x00\x01\xba\x44\x00", "video/mpeg"),
        (b"\x47" + b"\x00" * 187 + b"\x47" + b"\x00" * 187 + b"\x47" + b"\x00" * 187, "video/mp2t"),
    ],
)
def test_videos_are_recognised_by_their_bytes(head: bytes, mime: str) -> None:
    media = sniff(head)
    assert (media.kind, media.mime) == ("video", mime)


@pytest.mark.parametrize(
    ("head", "code", "words"),
    [
        (b"", ErrorCode.EMPTY, "empty"),
        (b"%PDF-1.7\n", ErrorCode.UNSUPPORTED_MEDIA, "PDF"),
        (b"PK\x03\x04\x14\x00", ErrorCode.UNSUPPORTED_MEDIA, "ZIP"),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            ErrorCode.UNSUPPORTED_MEDIA,
            "SVG",
        ),
        (b"hello, world\n", ErrorCode.UNSUPPORTED_MEDIA, "not a supported"),
        (b"ID3\x04\x00\x00", ErrorCode.UNSUPPORTED_MEDIA, "audio"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", ErrorCode.UNSUPPORTED_MEDIA, "audio"),
        (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00", ErrorCode.UNSUPPORTED_MEDIA, "audio"),
    ],
)
def test_non_media_gets_a_specific_error(head: bytes, code: ErrorCode, words: str) -> None:
    with pytest.raises(MediaError) as info:
        sniff(head)
    assert info.value.code == code
    assert words.lower() in info.value.message.lower()


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00\x00\x00\x08meta"


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (_ftyp(b"heic", b"mif1", b"heic"), "image/heic"),  # iPhone
        (_ftyp(b"heix", b"mif1"), "image/heic"),  # 10-bit
        (_ftyp(b"mif1", b"mif1", b"heic"), "image/heic"),  # generic brand, HEVC compatible
        (_ftyp(b"msf1", b"msf1", b"hevc"), "image/heic"),  # image sequence
        (_ftyp(b"mif1", b"mif1"), "image/heif"),  # codec not named
        (_ftyp(b"avif", b"mif1", b"miaf"), "image/avif"),
        (_ftyp(b"avis", b"msf1", b"avif"), "image/avif"),  # AVIF animation
        (_ftyp(b"mif1", b"mif1", b"avif", b"heic"), "image/avif"),  # Pillow decodes AV1
    ],
)
def test_heif_family_stills_are_images(head: bytes, mime: str) -> None:
    assert sniff(head) == MediaType("image", mime)


def test_mp4_is_not_mistaken_for_heif_by_its_compatible_brands() -> None:
    # A video's ftyp box may list mif1 among its brands (some encoders do): major brand rules.
    assert sniff(_ftyp(b"isom", b"isom", b"mif1", b"heic")).kind == "video"


def test_a_short_or_lying_ftyp_box_reads_only_what_is_there() -> None:
    head = b"\xff\xff\xff\xffftypmif1\x00\x00\x00\x00avi"  # size beyond the bytes given
    assert sniff(head) == MediaType("image", "image/heif")
