"""Decoding variants and resize policies of the one decode/resize path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from media_classifier.errors import ErrorCode, MediaError
from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Limits, classify_bytes
from media_classifier.media.images import decode_image, fit_to_model, open_image, prepare_image
from tests.functions.conftest import encode
from tests.model_factory import colour_model
from tools.hostile_corpus import gif_growing_frame, png_bomb

LIMIT = 50_000_000


def _arrow(width: int = 60, height: int = 40) -> Image.Image:
    """Left half red, right half blue: orientation is visible in the pixels."""
    img = Image.new("RGB", (width, height), "red")
    img.paste(Image.new("RGB", (width // 2, height), "blue"), (width // 2, 0))
    return img


def _with_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied() -> None:
    # Orientation 6: stored rotated; the viewer turns it 90 degrees clockwise.
    img = decode_image(_with_orientation(_arrow(), 6), max_pixels=LIMIT)
    assert img.size == (40, 60)
    top, bottom = np.asarray(img)[2, 20], np.asarray(img)[-3, 20]
    assert top[0] > 200 and top[2] < 60  # red on top after rotation
    assert bottom[2] > 200 and bottom[0] < 60


def test_exif_mirror_orientation_is_applied() -> None:
    img = decode_image(_with_orientation(_arrow(), 2), max_pixels=LIMIT)  # mirrored
    left = np.asarray(img)[20, 2]
    assert left[2] > 200 and left[0] < 60  # blue now on the left


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (20, 10), 128),
        lambda: Image.new("1", (20, 10), 1),
        lambda: Image.new("CMYK", (20, 10), (0, 255, 255, 0)),
        lambda: Image.new("RGBA", (20, 10), (255, 0, 0, 255)),
        lambda: Image.new("LA", (20, 10), (100, 255)),
        lambda: Image.new("I;16", (20, 10), 40000),
        lambda: Image.new("P", (20, 10), 3),
    ],
    ids=["L", "1", "CMYK", "RGBA", "LA", "I16", "P"],
)
def test_every_mode_ends_rgb(make) -> None:
    src = make()
    fmt = "TIFF" if src.mode in ("CMYK", "I;16") else "PNG"
    img = decode_image(encode(src, fmt), max_pixels=LIMIT)
    assert img.mode == "RGB" and img.size == (20, 10)


def test_cmyk_jpeg_colours_survive() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    r, g, b = np.asarray(decode_image(data, max_pixels=LIMIT))[8, 8]
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_png_keeps_its_brightness() -> None:
    data = encode(Image.new("I;16", (8, 8), 65535 // 2), "PNG")
    value = np.asarray(decode_image(data, max_pixels=LIMIT))[4, 4, 0]
    assert 110 <= value <= 140


def test_transparency_is_composited_on_white() -> None:
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert tuple(np.asarray(decode_image(encode(clear, "PNG"), max_pixels=LIMIT))[4, 4]) == (
        255,
        255,
        255,
    )
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0] * 256)
    data = encode(palette, "PNG", transparency=0)
    assert tuple(np.asarray(decode_image(data, max_pixels=LIMIT))[4, 4]) == (255, 255, 255)


def test_gif_first_frame() -> None:
    frames = [Image.new("P", (8, 8), i) for i in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buf.getvalue(), max_pixels=LIMIT).size == (8, 8)


def test_pixel_limit_refuses_before_decoding() -> None:
    data = encode(Image.new("L", (300, 300)), "PNG")
    with pytest.raises(MediaError) as info:
        open_image(data, max_pixels=300 * 300 - 1)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_truncated_jpeg_is_corrupt() -> None:
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(MediaError) as info:
        decode_image(data[: len(data) // 2], max_pixels=LIMIT)
    assert info.value.code == ErrorCode.CORRUPT_MEDIA


def test_garbage_after_a_png_signature_is_corrupt() -> None:
    with pytest.raises(MediaError) as info:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, max_pixels=LIMIT)
    assert info.value.code == ErrorCode.CORRUPT_MEDIA


def test_jpeg_draft_mode_decodes_a_large_photo_small() -> None:
    data = encode(Image.new("RGB", (4000, 3000), "green"), "JPEG")
    img = decode_image(data, max_pixels=LIMIT, target=(224, 224), policy="center_crop")
    assert img.size == (500, 375)  # 1/8 scale, still >= 256 on the short side
    assert min(img.size) >= 256


def test_squash_keeps_the_whole_image() -> None:
    out = fit_to_model(_arrow(60, 40), (10, 10), "squash")
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    assert out[5, 0, 0] > 200 and out[5, 9, 2] > 200  # both halves visible


def test_center_crop_keeps_the_centre() -> None:
    img = Image.new("RGB", (400, 100), "blue")
    img.paste(Image.new("RGB", (100, 100), "red"), (150, 0))
    out = fit_to_model(img, (32, 32), "center_crop")
    assert out.shape == (32, 32, 3)
    assert (out[:, :, 0] > 200).all()  # only the red centre survives


def test_center_crop_matches_torchvision_geometry() -> None:
    # 256-short-side resize then a 224 crop keeps 224/256 of the short side.
    img = Image.new("RGB", (512, 512), "black")
    img.paste(Image.new("RGB", (24, 512), "white"), (0, 0))  # inside the 32 px margin
    out = fit_to_model(img, (224, 224), "center_crop")
    assert out[:, 0].max() < 30


def test_unknown_policy_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="resize policy"):
        fit_to_model(_arrow(), (8, 8), "stretch")


@pytest.mark.parametrize("size", [(1, 1), (20000, 10), (10, 20000)])
def test_extreme_aspect_ratios(size: tuple[int, int]) -> None:
    data = encode(Image.new("RGB", size, "red"), "PNG")
    for policy in ("squash", "center_crop"):
        out = prepare_image(data, (32, 32), policy, max_pixels=LIMIT)
        assert out.shape == (32, 32, 3)


@pytest.mark.parametrize(("width", "height"), [(60_000, 60_000), (10_000, 10_000), (8_000, 8_000)])
def test_too_large_quotes_the_projects_limit_not_pillows(width: int, height: int) -> None:
    """Whether Pillow's bomb guard or our own check refuses it, the message names our limit."""
    with pytest.raises(MediaError) as info:
        open_image(png_bomb(width, height), max_pixels=50_000_000)
    assert info.value.code == ErrorCode.TOO_LARGE
    assert f"{width * height:,} pixels" in info.value.message
    assert "the limit is 50,000,000" in info.value.message
    assert "178956970" not in info.value.message and "178,956,970" not in info.value.message


def test_a_limit_above_pillows_guard_is_reported_as_the_decoders() -> None:
    """MAX_IMAGE_PIXELS above 89,478,485: Pillow still refuses; the message says it was Pillow."""
    with pytest.raises(MediaError) as info:
        open_image(png_bomb(10_000, 10_000), max_pixels=200_000_000)
    assert "decoder accepts at most 89,478,485" in info.value.message
    assert "200,000,000" in info.value.message


def test_an_animation_frame_over_the_limit_quotes_the_projects_limit(tmp_path: Path) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        model = Model.load(colour_model(Path(tmp) / "colour.onnx"), threads=1)
        with pytest.raises(MediaError) as info:
            classify_bytes(gif_growing_frame(20_000, 20_000), model, top_k=1, limits=Limits())
    assert info.value.code == ErrorCode.TOO_LARGE
    assert "an animation frame declares 400,000,000 pixels" in info.value.message
    assert "the limit is 50,000,000" in info.value.message
