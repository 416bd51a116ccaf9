"""Access to the functions' own decode/resize/inference code, so build-time checks use it.

``media_classifier`` (``functions/``, installed into this environment with ``pip install -e
functions``): ``media_classifier.media.images.prepare_image`` / ``fit_to_model`` and
``media_classifier.inference.model.Model`` are THE code under test. There is
deliberately no second implementation here: a model measured through other resize code is
measured on inputs it will never see in production.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
#: The functions' default pixel limit (config.MAX_IMAGE_PIXELS); build inputs are far below it.
MAX_PIXELS = 50_000_000


def prepare_image(data: bytes, size: tuple[int, int], policy: str) -> np.ndarray:
    """Bytes -> uint8 HxWx3 through the functions' ``prepare_image``."""
    from media_classifier.media.images import prepare_image as serving_prepare

    return serving_prepare(data, size, policy, max_pixels=MAX_PIXELS)


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 HxW (grey) or HxWx3 array as PNG: how test images enter the serving path."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
