"""Timeline building: runs of the same top label, smoothed against flicker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media_classifier.media.segments import build_segments, smooth_runs


def segs(labels: str, *, scores=None, interval=1.0, min_frames=2, duration=None):
    """Labels as a string, one character per frame at 0, 1, 2, ... s."""
    times = [i * interval for i in range(len(labels))]
    scores = scores if scores is not None else [0.5] * len(labels)
    return build_segments(
        times, list(labels), scores, interval=interval, min_frames=min_frames, duration=duration
    )


def spans(labels: str, **kw) -> list[tuple[str, float, float]]:
    return [(s["label"], s["startSec"], s["endSec"]) for s in segs(labels, **kw)]


def test_empty_video_has_no_segments() -> None:
    assert segs("") == []


def test_single_frame_is_one_segment_of_one_interval() -> None:
    assert segs("a", scores=[0.9], interval=2.0) == [
        {"startSec": 0.0, "endSec": 2.0, "label": "a", "score": 0.9}
    ]


def test_single_frame_flicker_does_not_split_a_segment() -> None:
    assert spans("aaaabaaaa") == [("a", 0.0, 9.0)]


def test_a_flicker_is_absorbed_before_its_neighbours() -> None:
    """In ``aba`` every run is short; the sandwiched ``b`` is the flicker, not the ``a``s."""
    assert spans("aba") == [("a", 0.0, 3.0)]
    assert spans("abaab") == [("a", 0.0, 5.0)]


def test_among_equal_short_runs_the_least_confident_goes_first() -> None:
    result = segs("ab", scores=[0.9, 0.4])
    assert [(s["label"], s["endSec"], s["score"]) for s in result] == [("a", 2.0, 0.9)]
    result = segs("ab", scores=[0.3, 0.8])
    assert [(s["label"], s["endSec"], s["score"]) for s in result] == [("b", 2.0, 0.8)]


def test_runs_of_at_least_min_frames_are_kept() -> None:
    assert spans("aaabbbccc") == [("a", 0.0, 3.0), ("b", 3.0, 6.0), ("c", 6.0, 9.0)]
    assert spans("aaabbaaa") == [("a", 0.0, 3.0), ("b", 3.0, 5.0), ("a", 5.0, 8.0)]
    assert spans("aaabbaaa", min_frames=3) == [("a", 0.0, 8.0)]


def test_short_run_between_different_labels_joins_the_longer_neighbour() -> None:
    assert spans("aaaaabccc") == [("a", 0.0, 6.0), ("c", 6.0, 9.0)]
    assert spans("aaabccccc") == [("a", 0.0, 3.0), ("c", 3.0, 9.0)]
    assert spans("aabcc") == [("a", 0.0, 3.0), ("c", 3.0, 5.0)]  # tie: the earlier one


def test_flicker_at_the_edges_joins_the_only_neighbour() -> None:
    assert spans("baaaa") == [("a", 0.0, 5.0)]
    assert spans("aaaab") == [("a", 0.0, 5.0)]


def test_alternating_labels_collapse_instead_of_splitting_every_frame() -> None:
    result = spans("abababab")
    assert len(result) == 1
    assert result[0][1:] == (0.0, 8.0)


def test_score_is_the_mean_over_the_runs_own_frames() -> None:
    """The absorbed flicker frame scored another label, so it does not count."""
    (seg,) = segs("aabaa", scores=[0.8, 0.6, 0.99, 0.7, 0.9])
    assert seg["label"] == "a"
    assert seg["score"] == pytest.approx(0.75)


def test_end_is_clipped_to_the_duration() -> None:
    assert spans("aaabbb", duration=5.5) == [("a", 0.0, 3.0), ("b", 3.0, 5.5)]
    # a duration shorter than the last frame's time (bad metadata) is ignored
    assert spans("aa", duration=0.5) == [("a", 0.0, 2.0)]


def test_times_come_from_the_sampler() -> None:
    result = build_segments(
        [0.0, 2.5, 5.0, 7.5], ["x", "x", "y", "y"], [0.5] * 4, interval=2.5, duration=9.0
    )
    assert [(s["startSec"], s["endSec"]) for s in result] == [(0.0, 5.0), (5.0, 9.0)]


def test_mismatched_lengths_and_bad_interval_are_errors() -> None:
    with pytest.raises(ValueError):
        build_segments([0.0, 1.0], ["a"], [0.5, 0.5], interval=1.0)
    with pytest.raises(ValueError):
        build_segments([0.0], ["a"], [0.5], interval=0.0)


@given(st.lists(st.sampled_from("abc"), max_size=40), st.integers(min_value=1, max_value=4))
def test_segments_tile_the_timeline(labels: list[str], min_frames: int) -> None:
    """Properties: contiguous, ordered, each label present in its own run, no short runs."""
    runs = smooth_runs(labels, min_frames)
    if not labels:
        assert runs == []
        return
    assert runs[0][1] == 0 and runs[-1][2] == len(labels) - 1
    for (label, first, last), nxt in zip(runs, [*runs[1:], None], strict=True):
        assert label in labels[first : last + 1]
        if nxt is not None:
            assert nxt[1] == last + 1 and nxt[0] != label
        if len(runs) > 1:
            assert last - first + 1 >= min_frames
