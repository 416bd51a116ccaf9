"""A burst of uploads against the local stack: every one ends in exactly one document.

Why a test and not only ``tools/loadtest.py``: losing events under a burst is the
failure users of the nearest peers complain about most, and it only shows with many
events in flight at once. The test runs the same code as the script, with ``N`` from
``MC_LOAD_N`` (default 200, the issue's number) so a slow machine can run fewer.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tools.loadtest import LOST_HINT, run_load

N = int(os.environ.get("MC_LOAD_N", "200"))
THREADS = 8


@pytest.mark.slow
def test_burst_of_uploads_drains_with_none_lost_or_duplicated(
    stack: Any, storage_bucket: Any, firestore_db: Any, run_id: str
) -> None:
    log = stack.firebase_log if stack is not None else None
    report = run_load(
        storage_bucket,
        firestore_db,
        n=N,
        threads=THREADS,
        timeout=600,
        owner=f"{run_id}-load",
        log_path=log,
    )
    print(f"\n{report.table()}")
    assert not report.lost, f"lost: {report.lost[:10]}\n{report.table()}\n{LOST_HINT}"
    assert report.terminal == N
    assert report.done == N, report.errors  # the shipped samples are all classifiable
    assert not report.extra_documents and not report.wrong_generation
    assert not report.classified_twice, report.classified_twice[:10]
