"""Backfill: give every object under the watched prefix a current result, safely.

Why: some objects have no result or an outdated one, and no event will ever come
for them: files uploaded before the functions were deployed, events lost while a
deploy failed (Storage triggers of the Python SDK are never retried), results of a
model that has since been retrained and redeployed, and errors worth a retry
(``TIMEOUT``, ``INTERNAL``, ...). The Firebase extensions' answer, re-triggering a
function per object, once ran 34.9 M executions; this one is a command that

* runs the trigger's own flow (:func:`flows.upload.handle_finalized`: claim,
  download that generation, classify, write with preconditions) in this process, so
  it never writes to Storage, fires no trigger and races safely with live events;
* is **bounded** (``--limit`` objects classified per run) and **rate-limited**
  (``--rate`` per second);
* is **resumable**: objects are listed in name order and ``--state FILE`` records the
  last one handled, so an interrupted run (Ctrl-C stops after the current object)
  continues where it stopped; ``--dry-run`` only counts;
* **reports progress**: one JSON line per classified object on stdout, a progress
  log line every ``--progress-every`` objects and a summary at the end.

Which results are redone is :func:`redo_reason` (pure): no document, a stale
``processing`` claim or an older generation (as for any event), plus a finished
result of another model file (another id, version or content hash ``sha``: a retrained
file is a new model even under the same id and version; a result that names no ``sha``
predates the hash and cannot be shown current), or an error with a retryable code.
``--errors CODE,...`` also redoes errors with those codes (``TOO_LARGE`` after a limit
was raised, ``INTERRUPTED`` after memory was), ``--everything`` redoes all. Run it from
the commit that is deployed: it classifies with the models in ``functions/models``, as
the deployed functions do.

    cd functions && venv/bin/python -m media_classifier backfill --dry-run
    venv/bin/python -m media_classifier backfill --limit 500 --rate 5 --state bf.json
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from media_classifier import logs
from media_classifier.errors import ErrorCode
from media_classifier.flows.upload import Flow
from media_classifier.store import results
from media_classifier.store.uploads import Upload, should_process

#: Errors that may not happen again: the instance was overloaded, the object was being
#: replaced, a bug was fixed, a model route was added. Errors about the bytes themselves
#: (UNSUPPORTED_MEDIA, CORRUPT_MEDIA, TOO_LARGE, ...) are not retried unless asked.
RETRYABLE = frozenset(
    {ErrorCode.TIMEOUT, ErrorCode.INTERNAL, ErrorCode.NOT_FOUND, ErrorCode.UNKNOWN_MODEL}
)


def redo_reason(
    existing: dict[str, Any],
    current_model: dict[str, str],
    *,
    everything: bool = False,
    also: frozenset[str] = frozenset(),
) -> str | None:
    """Why a finished result of the object's current generation should be redone, or None.

    ``current_model`` is the ``{id, name, version, sha}`` the object's route gives now;
    ``also``: error codes to redo besides :data:`RETRYABLE` (``--errors``: e.g.
    ``TOO_LARGE`` after a limit was raised, ``INTERRUPTED`` after memory was).
    """
    if everything:
        return "backfill --everything"
    if existing.get("status") == results.STATUS_ERROR:
        code = (existing.get("error") or {}).get("code")
        if code in RETRYABLE:
            return f"retryable error {code}"
        return f"error {code} (--errors)" if code in also else None
    model = existing.get("model") or {}
    old = (model.get("id"), model.get("version"), model.get("sha"))
    new = (current_model["id"], current_model["version"], current_model.get("sha"))
    if old != new:
        return f"model changed: {old[0]} {old[1]} sha {old[2]} -> {new[0]} {new[1]} sha {new[2]}"
    return None


class Pacer:
    """At most ``rate`` calls of :meth:`wait` per second (``rate`` <= 0: no limit)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = clock()

    def wait(self) -> None:
        now = self._clock()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


@dataclass(frozen=True)
class Scope:
    """Where the backfill looks and what its state file belongs to."""

    bucket: str
    under: str

    def key(self) -> dict[str, str]:
        return {"bucket": self.bucket, "under": self.under}


def load_state(path: Path | None, scope: Scope) -> str | None:
    """The last object name a previous run of this scope handled, if any."""
    if path is None or not path.exists():
        return None
    state = json.loads(path.read_text())
    if {k: state.get(k) for k in ("bucket", "under")} != scope.key():
        raise SystemExit(f"{path} belongs to another backfill: {state}")
    return state.get("after")


def save_state(path: Path | None, scope: Scope, after: str, counts: Counter[str]) -> None:
    """Record progress atomically (write, then rename), so a kill never leaves half a file."""
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**scope.key(), "after": after, "counts": dict(counts)}))
    os.replace(tmp, path)


#: Result documents read per Firestore round trip while scanning.
READ_BATCH = 100


def with_results(
    uploads: Iterable[Upload], db: Any, collection: str, batch: int = READ_BATCH
) -> Iterator[tuple[Upload, dict[str, Any] | None]]:
    """Each upload with its result document (None: none), read ``batch`` at a time.

    Why batches: a scan of a million objects that are mostly up to date is a million
    reads; one ``get_all`` per hundred makes it a hundredth of the round trips. A result
    that changes after it was read is harmless: the claim reads it again under a
    precondition before anything is written.
    """
    for group in itertools.batched(uploads, batch):
        refs = [db.collection(collection).document(results.doc_id(u.name)) for u in group]
        found = {snap.reference.path: snap for snap in db.get_all(refs)}
        for upload, ref in zip(group, refs, strict=True):
            snap = found.get(ref.path)
            yield upload, (snap.to_dict() if snap is not None and snap.exists else None)


def list_uploads(bucket: Any, under: str, after: str | None) -> Iterator[Upload]:
    """Objects under ``under`` in name order, strictly after ``after``."""
    blobs = bucket.list_blobs(prefix=under, start_offset=after or None)
    for blob in blobs:
        if after is not None and blob.name <= after:
            continue  # start_offset is inclusive (and not every emulator applies it)
        yield Upload.of(bucket.name, blob)


@dataclass
class BackfillOptions:
    """One run's parameters (the command line, parsed)."""

    flow: Flow
    limit: int | None = None
    rate: float = 0.0
    everything: bool = False
    errors: frozenset[str] = frozenset()
    dry_run: bool = False
    progress_every: int = 100
    read_batch: int = READ_BATCH


class StopFlag:
    """Ctrl-C / SIGTERM ask the run to stop after the object in hand."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.stop = True


def run(
    uploads: Iterable[Upload],
    *,
    db: Any,
    settings: BackfillOptions,
    model_ref: Callable[[str], dict[str, str]],
    scope: Scope,
    state: Path | None = None,
    out: Any = sys.stdout,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Backfill ``uploads``; returns the summary (also printed as the last line)."""
    counts: Counter[str] = Counter()
    pacer = Pacer(settings.rate)
    started = time.monotonic()
    complete = True
    last = None
    scanned = with_results(uploads, db, settings.flow.collection, settings.read_batch)
    for upload, existing in scanned:
        if stop is not None and stop.stop:
            complete = False
            break
        if settings.limit is not None and counts["classified"] >= settings.limit:
            complete = False
            break
        counts["scanned"] += 1
        outcome = _one(upload, existing, db=db, settings=settings, model_ref=model_ref, pacer=pacer)
        counts[outcome["counted"]] += 1
        if outcome["counted"] in ("classified", "would classify"):
            print(json.dumps(outcome, ensure_ascii=False), file=out, flush=True)
        last = upload.name
        if not settings.dry_run:
            save_state(state, scope, last, counts)
        if counts["scanned"] % settings.progress_every == 0:
            logs.backfill_progress(dict(counts), last, time.monotonic() - started)
    if complete and state is not None and state.exists() and not settings.dry_run:
        state.unlink()  # the whole scope was covered: a next run starts from the top
    summary = {
        "summary": True,
        "complete": complete,
        "last": last,
        "seconds": round(time.monotonic() - started, 1),
        **dict(counts),
    }
    logs.backfill_finished(summary)
    print(json.dumps(summary, ensure_ascii=False), file=out, flush=True)
    return summary


def _one(
    upload: Upload,
    existing: dict[str, Any] | None,
    *,
    db: Any,
    settings: BackfillOptions,
    model_ref: Callable[[str], dict[str, str]],
    pacer: Pacer,
) -> dict[str, Any]:
    """Handle one listed object: check its result, classify it if it needs it."""
    if not should_process(upload.name, settings.flow.prefix):
        return {"counted": "outside prefix", "path": upload.name}
    model_id = settings.flow.model_for(upload.name)
    try:
        current: dict[str, str] | None = model_ref(model_id)
    except KeyError:  # a route to a model not served: never turn a result into that error
        current = None

    def redo(existing: dict[str, Any]) -> str | None:
        if current is None:
            return None  # objects without a result still get one (UNKNOWN_MODEL), as events do
        return redo_reason(existing, current, everything=settings.everything, also=settings.errors)

    decision = results.decide(existing, upload.generation, datetime.now(UTC), redo)
    if not decision.claim:
        return {"counted": "up to date", "path": upload.name, "reason": decision.reason}
    if settings.dry_run:
        return {"counted": "would classify", "path": upload.name, "reason": decision.reason}
    pacer.wait()
    status = settings.flow.run(upload, db, redo)
    counted = "classified" if status in results.TERMINAL else status
    return {"counted": counted, "path": upload.name, "reason": decision.reason, "status": status}
