"""The test tree itself: one `make test` pytest run must be able to collect every module."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
#: The folders `make test` collects in one pytest run (tests/model_build runs on its own).
ONE_RUN = ("functions", "web", "e2e", "tools")


def test_no_two_test_modules_in_one_run_share_a_basename() -> None:
    """Without packages, pytest imports test modules by basename: a second one is an error."""
    names = Counter(p.name for folder in ONE_RUN for p in (TESTS / folder).rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
