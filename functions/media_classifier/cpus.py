"""How many CPUs this instance may use: the one answer every thread pool sizes itself by."""

from __future__ import annotations

import os


def allocated_cpus() -> int:
    """CPUs this process may use (the container's share, not the host's core count).

    ONNX Runtime, libheif and ffmpeg size their pools to the host, which oversubscribes a
    1- or 2-vCPU Cloud Functions instance sharing a large host; the affinity mask reflects
    the allocation.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
