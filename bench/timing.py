"""Repeat a call and summarize its wall times (median and p90, as the goals are stated).

A time budget rather than a fixed count: the notebook way on a 12 MP photo takes
hundreds of milliseconds, the int8 pipeline on a small PNG a few, and both need
enough samples for a stable p90 without making ``make bench`` take minutes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Budget:
    """How long to measure one case: warm-up calls, then at least ``min_iters`` timed calls
    and more until ``seconds`` have passed or ``max_iters`` is reached."""

    warmup: int = 3
    min_iters: int = 10
    max_iters: int = 200
    seconds: float = 3.0


QUICK = Budget(warmup=1, min_iters=2, max_iters=3, seconds=0.0)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples_ms: list[float]) -> dict[str, Any]:
    """Median, p90, min and mean of a list of milliseconds."""
    return {
        "n": len(samples_ms),
        "median_ms": round(statistics.median(samples_ms), 3),
        "p90_ms": round(percentile(samples_ms, 90), 3),
        "min_ms": round(min(samples_ms), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
    }


def measure(fn: Callable[[], Any], budget: Budget) -> tuple[dict[str, Any], list[Any]]:
    """Time ``fn`` under ``budget``; returns the summary and what the timed calls returned."""
    for _ in range(budget.warmup):
        fn()
    samples: list[float] = []
    outputs: list[Any] = []
    start = time.perf_counter()
    while len(samples) < budget.max_iters and (
        len(samples) < budget.min_iters or time.perf_counter() - start < budget.seconds
    ):
        t0 = time.perf_counter_ns()
        outputs.append(fn())
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return summarize(samples), outputs
