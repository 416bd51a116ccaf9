"""CPU latency of ONNX files, measured the way the functions run them (batch 1, warm session).

Files are timed in alternating rounds on the same real inputs: on a shared build machine a
burst of load then hits every file alike instead of skewing the comparison.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def compare_latency(
    paths: Sequence[Path],
    inputs: Sequence[np.ndarray],
    threads: int | None = 1,
    rounds: int = 4,
) -> list[float]:
    """Median ms of batch-1 ``Model.predict`` per file; ``inputs[k]`` are uint8 NHWC for file k.

    ``threads=None`` uses the functions' default (the CPUs allocated to the process).
    """
    from media_classifier.inference.model import Model

    models = [Model.load(p, threads=threads) for p in paths]
    for m, x in zip(models, inputs, strict=True):
        for i in range(5):
            m.predict(x[i % len(x)][None])
    times: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for k, (m, x) in enumerate(zip(models, inputs, strict=True)):
            for i in range(len(x)):
                t = time.perf_counter()
                m.predict(x[i][None])
                times[k].append((time.perf_counter() - t) * 1000.0)
    return [statistics.median(t) for t in times]
