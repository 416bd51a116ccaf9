"""Recovery: an upload whose worker died mid-way still ends in ``done`` or ``error``.

Why: a worker can die after claiming a document and before finishing it: the instance
ran out of memory, a native decoder crashed, the function hit its time limit, a deploy
replaced the instance. Storage triggers of the Python SDK are never retried, so no
event will come, and without this the document would say ``processing`` for ever:
the silence the Firebase extensions' users complain about most.

The scheduled function ``recover_interrupted`` (every 10 minutes; also
``python -m media_classifier recover``) finds ``processing`` claims older than
:data:`results.STALE_CLAIM` and, for each,

* **retries it once** through the trigger's own flow
  (:func:`flows.upload.handle_finalized`: claim with a precondition, download that
  generation, classify, write), in its own instance; the claim's ``attempts`` says
  how many workers have taken it;
* **gives up** when the claim has already been taken :data:`MAX_ATTEMPTS` times: it
  writes ``error`` ``INTERRUPTED``, so a file that kills every worker (a decoder
  crash, a memory blow-up the limits did not foresee) costs two runs, not a loop.

It writes nothing to Storage, and every write carries a precondition, so it races
safely with live deliveries and with another sweep. Each run is bounded: it scans at
most ``scan`` claims and starts no retry after ``budget_s`` seconds, leaving the rest
for the next run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from media_classifier import logs
from media_classifier.errors import ErrorCode, MediaError
from media_classifier.flows.upload import Flow, error_fields
from media_classifier.store import results
from media_classifier.store.results import MAX_ATTEMPTS, attempts_of
from media_classifier.store.uploads import Upload, custom_metadata, should_process

#: Seconds after which a run starts no more retries (the function's limit is 540 s,
#: and one retry can take as long as the slowest accepted video).
RETRY_BUDGET_S = 300.0
#: Claims read per run.
SCAN = 500

INTERRUPTED_MESSAGE = (
    "processing stopped {attempts} times without a result (the worker ran out of memory,"
    " crashed or hit its time limit); not retried automatically"
)


def next_step(existing: dict[str, Any]) -> str:
    """``"retry"`` or ``"give up"`` for a stale claim (pure)."""
    return "give up" if attempts_of(existing) >= MAX_ATTEMPTS else "retry"


def upload_of_result(existing: dict[str, Any]) -> Upload | None:
    """The upload a claim describes (every claim records bucket, path, generation, size)."""
    bucket, path = existing.get("bucket"), existing.get("path")
    if not (isinstance(bucket, str) and bucket and isinstance(path, str) and path):
        return None
    try:
        generation = int(existing["generation"])
        size = int(existing.get("size") or 0)
    except (KeyError, TypeError, ValueError):
        return None
    metadata = custom_metadata(existing.get("customMetadata"))
    return Upload(bucket, path, generation, size, existing.get("clientContentType"), metadata)


def plan(existing: dict[str, Any], prefix: str) -> tuple[Upload | None, str]:
    """The upload behind a stale claim and ``"retry"``, ``"give up"`` or ``"skip"`` (pure).

    Skipped: documents the flow did not write (no bucket, path or generation), or outside
    the watched prefix (it changed since): left alone, never guessed at.
    """
    upload = upload_of_result(existing)
    if upload is None or not should_process(upload.name, prefix):
        return None, "skip"
    return upload, next_step(existing)


@dataclass
class RecoveryOptions:
    """The trigger's flow, plus this run's bounds."""

    flow: Flow
    budget_s: float = RETRY_BUDGET_S
    scan: int = SCAN


def sweep(
    db: Any,
    settings: RecoveryOptions,
    *,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, int]:
    """One recovery run over the stale claims; returns what it did, by outcome."""
    started = clock()
    now = now or datetime.now(UTC)
    counts: Counter[str] = Counter()
    stale = results.stale_claims(db, settings.flow.collection, now, settings.scan)
    # Give-ups first: one write each, never held up by a long retry.
    stale.sort(key=lambda snap: next_step(snap.to_dict() or {}) != "give up")
    for snap in stale:
        existing = snap.to_dict() or {}
        upload, step = plan(existing, settings.flow.prefix)
        if upload is None:
            counts["skipped"] += 1
            logs.recovery_skipped(snap.id, "not a claim of the watched prefix")
            continue
        if step == "retry" and clock() - started > settings.budget_s:
            counts["deferred"] += 1  # the next run takes it
            continue
        try:
            counts[_recover(db, settings, snap, upload, existing)] += 1
        except Exception as exc:  # one bad document must not stop the others, run after run
            logs.internal_error(upload.name, str(upload.generation), exc)
            counts["failed"] += 1
    summary = {"stale": len(stale), **dict(counts)}
    logs.recovery_finished(summary)
    return summary


def _recover(
    db: Any, settings: RecoveryOptions, snap: Any, upload: Upload, existing: dict[str, Any]
) -> str:
    """Retry or give up one stale claim; returns the outcome to count."""
    attempts = attempts_of(existing)
    if next_step(existing) == "retry":
        logs.recovery_retry(upload.name, str(upload.generation), attempts)
        status = settings.flow.run(upload, db)
        return "retried" if status in results.TERMINAL else status
    error = MediaError(ErrorCode.INTERRUPTED, INTERRUPTED_MESSAGE.format(attempts=attempts))
    if not results.abandon(db, snap, error_fields(error)):
        logs.superseded(upload.name, str(upload.generation))
        return "superseded"
    logs.recovery_gave_up(upload.name, str(upload.generation), attempts)
    return "gave up"
