"""HEIC/HEIF (iPhone photos) and AVIF through the one image path."""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from media_classifier.cpus import allocated_cpus
from media_classifier.errors import ErrorCode, MediaError
from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Limits, classify_bytes
from media_classifier.media import heif
from media_classifier.media.images import decode_image, open_image
from tests.functions.conftest import encode
from tests.media_factory import animated_avif, heic_bytes

LIMIT = 50_000_000
FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"


def _arrow(width: int = 60, height: int = 40) -> Image.Image:
    """Left half red, right half blue: orientation is visible in the pixels."""
    img = Image.new("RGB", (width, height), "red")
    img.paste(Image.new("RGB", (width // 2, height), "blue"), (width // 2, 0))
    return img


def _corner_colours(img: Image.Image) -> tuple[str, str]:
    """Dominant colour ('red'/'blue') near the top-left and the bottom-right corner."""
    pixels = np.asarray(img)

    def name(p: np.ndarray) -> str:
        return "red" if p[0] > p[2] else "blue"

    return name(pixels[2, 2]), name(pixels[-3, -3])


# orientation -> (decoded size, top-left colour, bottom-right colour) for the 60x40 arrow
EXPECTED = {
    1: ((60, 40), ("red", "blue")),
    2: ((60, 40), ("blue", "red")),  # mirrored
    3: ((60, 40), ("blue", "red")),  # upside down
    6: ((40, 60), ("red", "blue")),  # turned 90 degrees clockwise: red on top
    8: ((40, 60), ("blue", "red")),  # turned counter-clockwise: blue on top
}


@pytest.mark.parametrize("orientation", sorted(EXPECTED))
def test_heic_orientation_is_applied_once(orientation: int) -> None:
    # Written like an iPhone: container rotation (irot/imir) plus the same EXIF tag.
    data = heic_bytes(_arrow(), orientation=orientation)
    img = decode_image(data, max_pixels=LIMIT)
    size, corners = EXPECTED[orientation]
    assert img.mode == "RGB"
    assert img.size == size
    assert _corner_colours(img) == corners


@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_avif_orientation_is_applied(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(_arrow(), "AVIF", exif=exif.tobytes(), quality=90)
    img = decode_image(data, max_pixels=LIMIT)
    size, corners = EXPECTED[orientation]
    assert img.size == size
    assert _corner_colours(img) == corners


def test_the_primary_image_is_classified_not_the_first() -> None:
    data = heic_bytes(
        Image.new("RGB", (40, 30), "blue"), Image.new("RGB", (50, 30), "red"), primary=1
    )
    img = decode_image(data, max_pixels=LIMIT)
    assert img.size == (50, 30)
    assert _corner_colours(img) == ("red", "red")


def test_ten_bit_heic_becomes_eight_bit_rgb() -> None:
    img = decode_image(heic_bytes(_arrow(), bit_depth=10), max_pixels=LIMIT)
    assert img.mode == "RGB"
    assert _corner_colours(img) == ("red", "blue")
    assert np.asarray(img)[2, 2, 0] > 230


def test_heic_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 20, 30))
    pixels = np.asarray(decode_image(heic_bytes(rgba), max_pixels=LIMIT))
    assert pixels[15, 5].min() > 240  # transparent -> white
    assert pixels[15, 30, 0] > 230 and pixels[15, 30, 1] < 30  # opaque red stays red


def test_heic_pixel_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = heic_bytes(_arrow())
    cls = heif._heif_image_file()
    monkeypatch.setattr(cls, "load", lambda self: pytest.fail("decoded past the pixel limit"))
    with pytest.raises(MediaError) as info:
        open_image(data, max_pixels=60 * 40 - 1)
    assert info.value.code == ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    "cut",
    [
        lambda d: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",  # ftyp box only
        lambda d: d[:300],  # header cut inside the meta box
        lambda d: d[: len(d) // 2],  # image data cut
    ],
    ids=["ftyp-only", "meta-cut", "data-cut"],
)
def test_broken_heic_is_corrupt_media(cut) -> None:
    with pytest.raises(MediaError) as info:
        decode_image(cut(heic_bytes(_arrow(200, 150), quality=95)), max_pixels=LIMIT)
    assert info.value.code == ErrorCode.CORRUPT_MEDIA


def test_decoder_threads_follow_the_allocated_cpus() -> None:
    from pillow_heif import options

    heif._heif_image_file()
    assert allocated_cpus() == options.DECODE_THREADS
    assert not options.THUMBNAILS and not options.DEPTH_IMAGES


def test_decoders_are_not_imported_at_cold_start() -> None:
    # Deploy discovery times main.py's import: decoders load on the first file that needs them.
    heavy = ["pillow_heif", "PIL", "numpy", "onnxruntime", "imagecodecs"]
    code = f"import sys, main; print([m for m in {heavy!r} if m in sys.modules])"
    config = '{"projectId": "demo-test", "storageBucket": "demo-test.appspot.com"}'
    env = {**os.environ, "FIREBASE_CONFIG": config}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=FUNCTIONS, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_heic_and_avif_classify_like_the_png(colour_model_path: Path) -> None:
    model = Model.load(colour_model_path)
    limits = Limits()
    red = Image.new("RGB", (64, 48), (220, 30, 30))
    png = classify_bytes(encode(red, "PNG"), model, top_k=1, limits=limits)
    for data, mime in [(heic_bytes(red), "image/heic"), (encode(red, "AVIF"), "image/avif")]:
        result = classify_bytes(data, model, top_k=1, limits=limits)
        assert result.kind == "image"
        assert result.content_type == mime
        assert result.labels[0]["label"] == png.labels[0]["label"]
        assert result.labels[0]["score"] == pytest.approx(png.labels[0]["score"], abs=0.05)


def test_animated_avif_is_sampled_like_a_gif(tmp_path: Path, colour_model_path: Path) -> None:
    path = animated_avif(tmp_path / "anim.avif", [1000, 1000, 1000])
    result = classify_bytes(
        path.read_bytes(), Model.load(colour_model_path), top_k=1, limits=Limits()
    )
    assert result.kind == "video"
    assert result.content_type == "image/avif"
    assert result.video["framesAnalyzed"] == 3


def test_the_demo_heic_decodes_upright_like_its_png() -> None:
    samples = Path(__file__).resolve().parents[3] / "samples" / "images"
    heic = decode_image((samples / "chelsea-cat-portrait.heic").read_bytes(), max_pixels=LIMIT)
    png = decode_image((samples / "chelsea-cat.png").read_bytes(), max_pixels=LIMIT)
    assert heic.size == png.size == (451, 300)
    diff = np.abs(np.asarray(heic, dtype=np.int16) - np.asarray(png, dtype=np.int16))
    assert diff.mean() < 3  # lossy HEVC at quality 75, same orientation


CENTER_CROP_224 = {"target": (224, 224), "policy": "center_crop"}


def _scene(width: int, height: int) -> Image.Image:
    """The arrow (red left, blue right) over a top-to-bottom green ramp: orientation shows
    in the corners, a crop in the wrong place in the ramp."""
    pixels = np.asarray(_arrow(width, height)).copy()
    pixels[..., 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    return Image.fromarray(pixels)


@functools.cache
def _heic_without_exif(tile_size: int) -> bytes:
    """A 1024x768 textured photo, thumbnail 512, no EXIF item: pillow-heif stores EXIF after
    the pictures and reads it at open, so a file cut before it is refused before any check
    of the pixels' data."""
    import pillow_heif

    grain = np.random.default_rng(0).integers(0, 48, (768, 1024, 3), dtype=np.uint8)
    img = Image.fromarray(np.asarray(_scene(1024, 768)) // 2 + grain)
    buf = io.BytesIO()
    pillow_heif.from_pillow(img).save(buf, quality=50, thumbnails=[512], tile_size=tile_size)
    return buf.getvalue()


@pytest.mark.parametrize("kept", [0.2, 0.5, 0.7])
@pytest.mark.parametrize("tile_size", [0, 512], ids=["one-picture", "grid"])
def test_a_heic_cut_short_is_corrupt_media_even_as_a_grid_with_a_thumbnail(
    kept: float, tile_size: int
) -> None:
    # libheif decodes a grid whose last tiles are missing as green, without an error.
    data = _heic_without_exif(tile_size)
    assert heif.missing_data(data) is None
    with pytest.raises(MediaError) as info:
        decode_image(data[: int(len(data) * kept)], max_pixels=LIMIT, **CENTER_CROP_224)
    assert info.value.code == ErrorCode.CORRUPT_MEDIA


def test_a_heic_whose_cut_loses_only_the_thumbnail_decodes_its_primary_image() -> None:
    # libheif writes the thumbnail's data after the primary image's.
    data = heic_bytes(_scene(800, 600), thumbnails=(512,))
    img = decode_image(data[:-200], max_pixels=LIMIT, **CENTER_CROP_224)
    assert img.size == (800, 600)
    assert _corner_colours(img) == ("red", "blue")
