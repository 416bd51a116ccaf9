"""HEIC/HEIF stills (the iPhone camera's default format) opened as Pillow images.

Why a module of its own: Pillow decodes AVIF itself but not HEVC-coded HEIF, so these
files go through libheif + libde265 (the ``pillow-heif`` wheel; its x265 encoder is
never called here). Not the decoder-only ``pi-heif``: its 1.4.0 wheel (libheif 1.23.0)
crashed the process on mutated files within seconds of fuzzing
(``tests/functions/test_fuzz_decode.py``), which this release answers with an error.
Everything after opening is the ordinary image path in
:mod:`.images` (pixel limit on the header, resize, the same model input); only what is
specific to HEIF is decided here:

* the **primary image** is classified. A HEIF file can hold several top-level images
  (bursts, brackets) and always names the one a viewer shows; it need not be the first;
* the container's rotation and mirroring (``irot``/``imir``) are applied by libheif
  while decoding, and the EXIF orientation tag (which on iPhones repeats them) is reset
  to 1 by ``pillow-heif``, so nothing is rotated twice;
* 10/12-bit HDR images are converted to 8 bits, what the model takes;
* thumbnails, depth maps and auxiliary images (alpha excepted) are not read at all;
* libheif decodes the tiles of a grid image (iPhones write 512x512 tiles) on as many
  threads as this instance has CPUs, not the host's.

``pillow_heif`` is imported on the first HEIF file, never at cold start (it is not
registered as a Pillow plugin either: AVIF stays with Pillow's own decoder).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from .errors import ErrorCode, MediaError

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
        from .model import allocated_cpus

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
