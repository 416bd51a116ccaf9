"""A video's timeline: runs of the same top label, without single-frame flicker.

Why smoothing: a classifier's top label flips on the odd frame (motion blur, a
cut, two close classes), and a timeline that splits at every flip is noise to
a reader. The rule, applied to the sequence of per-frame top labels:

1. Group consecutive frames with the same top label into runs.
2. While some run is shorter than ``min_frames`` frames (and there is more than
   one run), take the shortest such run (on ties: first one sandwiched between
   two runs of the same label, i.e. a real flicker; then the least confident,
   by mean score; then the earliest) and give its frames to a neighbour: to
   the one whose label surrounds it if both neighbours agree (``A A B A A`` ->
   one ``A`` run), otherwise to the longer neighbour (the earlier one on ties).
   Then join neighbours with equal labels.
3. Each remaining run is a segment: ``startSec`` is the time of its first
   frame; ``endSec`` is the time of its last frame plus ``interval`` (the frame
   stands for the interval after it), clipped to the video's duration;
   ``label`` is the run's label; ``score`` is the mean top-1 score of the
   frames in the run whose own top label is that label (absorbed flicker frames
   scored a different label, so they do not count).

Pure and deterministic, so it is tested directly and reused by any caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class _Run:
    label: str
    first: int  # index of the first frame
    last: int  # index of the last frame (inclusive)

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def _runs(labels: Sequence[str]) -> list[_Run]:
    runs: list[_Run] = []
    for i, label in enumerate(labels):
        if runs and runs[-1].label == label:
            runs[-1].last = i
        else:
            runs.append(_Run(label, i, i))
    return runs


def _join_equal_neighbours(runs: list[_Run]) -> list[_Run]:
    joined: list[_Run] = []
    for run in runs:
        if joined and joined[-1].label == run.label:
            joined[-1].last = run.last
        else:
            joined.append(run)
    return joined


def smooth_runs(
    labels: Sequence[str], min_frames: int = 2, scores: Sequence[float] | None = None
) -> list[tuple[str, int, int]]:
    """``(label, first, last)`` index runs after absorbing runs shorter than ``min_frames``."""
    runs = _runs(labels)

    def sandwiched(j: int) -> bool:
        return 0 < j < len(runs) - 1 and runs[j - 1].label == runs[j + 1].label

    def confidence(j: int) -> float:
        if scores is None:
            return 0.0
        return sum(scores[runs[j].first : runs[j].last + 1]) / runs[j].length

    while len(runs) > 1:
        short = [i for i, r in enumerate(runs) if r.length < min_frames]
        if not short:
            break
        i = min(short, key=lambda j: (runs[j].length, not sandwiched(j), confidence(j), j))
        prev = runs[i - 1] if i > 0 else None
        nxt = runs[i + 1] if i + 1 < len(runs) else None
        target: _Run | None
        if prev is not None and (nxt is None or prev.label == nxt.label):
            target = prev
        elif prev is None:
            target = nxt
        else:
            assert nxt is not None
            target = prev if prev.length >= nxt.length else nxt
        assert target is not None
        target.first = min(target.first, runs[i].first)
        target.last = max(target.last, runs[i].last)
        del runs[i]
        runs = _join_equal_neighbours(runs)
    return [(r.label, r.first, r.last) for r in runs]


def build_segments(
    times: Sequence[float],
    labels: Sequence[str],
    scores: Sequence[float],
    *,
    interval: float,
    min_frames: int = 2,
    duration: float | None = None,
) -> list[dict]:
    """Segments ``[{startSec, endSec, label, score}]`` from per-frame top labels.

    ``times`` must be ascending (the sampler's timestamps), one per frame, with
    the frame's top label and its score. ``interval`` is the sampling interval
    actually used (``video.sampling_interval``). ``duration`` (optional) clips
    the last segment's end. Empty input gives an empty timeline.
    """
    if not (len(times) == len(labels) == len(scores)):
        raise ValueError("times, labels and scores must have the same length")
    if interval <= 0:
        raise ValueError("interval must be > 0")
    segments = []
    for label, first, last in smooth_runs(labels, min_frames, scores):
        own = [scores[i] for i in range(first, last + 1) if labels[i] == label]
        end = times[last] + interval
        if duration is not None and duration > times[last]:
            end = min(end, duration)
        segments.append(
            {
                "startSec": round(float(times[first]), 3),
                "endSec": round(float(end), 3),
                "label": label,
                "score": round(float(sum(own) / len(own)), 4),
            }
        )
    return segments
