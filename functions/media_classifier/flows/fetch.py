"""Download one stored object, classify it, time both: the step every flow shares.

The Storage trigger (its event's generation), the HTTPS functions (an object a client
names), the backfill, the refresh and the compare command all classify a stored object
the same way: size checked from the metadata before any byte moves, the bytes in a
private temporary directory that is gone afterwards, the download's time in the
result's ``timings``.
"""

from __future__ import annotations

import tempfile
import time

from media_classifier.inference.model import Model
from media_classifier.inference.pipeline import Classification, Limits, check_size, classify_file
from media_classifier.store.uploads import Blob, download


def classify_object(
    blob: Blob, size: int, model: Model, *, top_k: int, limits: Limits
) -> Classification:
    """The outcome for ``blob`` (``size`` from its metadata); raises ``MediaError``."""
    check_size(size, limits)
    with tempfile.TemporaryDirectory(prefix="mc-") as tmp:
        started = time.perf_counter()
        path = download(blob, tmp)
        download_ms = round((time.perf_counter() - started) * 1000, 2)
        outcome = classify_file(path, model, top_k=top_k, limits=limits)
    outcome.timings = {"download": download_ms, **outcome.timings}
    return outcome
