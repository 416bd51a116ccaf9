"""CPU latency of an ONNX file, measured the way serving runs it (batch 1, warm session)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from model_build.onnx_export import run_onnx, session


def latency_ms(
    path: Path, images: np.ndarray, threads: int = 0, repeats: int = 50
) -> dict[str, float]:
    """Median and p90 of batch-1 inference over ``repeats`` runs after a warm-up.

    ``images`` are real prepared inputs (uint8 NHWC), cycled: timing on zeros can flatter.
    """
    sess = session(path, threads=threads)
    for i in range(5):
        run_onnx(sess, images[i % len(images)][None])
    times = []
    for i in range(repeats):
        x = images[i % len(images)][None]
        t0 = time.perf_counter()
        run_onnx(sess, x)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[int(0.9 * (len(times) - 1))],
        "threads": float(threads),
    }
