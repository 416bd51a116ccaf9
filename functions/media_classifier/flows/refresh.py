"""Refresh: the backfill fanned out over a Cloud Tasks queue, with one progress document.

Why: the single-process ``backfill`` stays below a few dozen objects per second; a bucket
of a million uploads needs many instances. Cloud Tasks dispatches the task-queue function
``refreshTasks`` across as many instances as its rate limits allow, retrying failed tasks
with back-off, the way Firebase's own extensions run their backfills.

How a run goes (every step idempotent: Cloud Tasks delivers at least once):

* **start** (CLI ``python -m media_classifier refresh start``, or the admin-only callable
  ``refresh_admin``): writes the run document ``{REFRESH_COLLECTION}/{run}`` and enqueues
  one *list* task.
* a **list** task lists one page of the bucket under ``under`` and stores each slice of
  ``batch`` objects as a batch document ``{run}/batches/{page}-{slice}`` (created once: a
  second delivery finds it and counts nothing), enqueues one *batch* task per slice (task
  name derived from the batch: the queue refuses a duplicate), then the next page's list
  task. So listing itself is spread over tasks, never one long request.
* a **batch** task runs the trigger's own flow (:class:`flows.upload.Flow`: claim with
  a precondition, classify, finish) for each object of its slice that the batch document
  has no outcome for yet, with the backfill's rule of what is outdated
  (:func:`flows.backfill.redo_reason`, model content hash included), and records each outcome
  and the run's counters in one transaction, once. A task that fails mid-way is retried
  and starts after the last recorded object; a result written before the failure is up
  to date on the retry anyway (the claim's precondition), so nothing is classified twice.
* **cancel** marks the run; tasks delivered afterwards do nothing. **resume** re-enqueues
  the unfinished batches (and the listing, if it had not finished) under new task names.

The run document (readable by admins only, see ``firestore.rules``): ``status``
(``running``, ``cancelled``, ``done``), ``listed``, ``enqueued`` (batch tasks), ``done``,
``skipped`` (up to date, or taken by another delivery), ``errors`` ``{CODE: n}``,
``startedAt``, ``updatedAt``, ``finishedAt``, ``estimatedRemainingSec`` (objects listed
but not handled, at the rate so far; while listing goes on, a lower bound).
``models`` (``{id: {id, name, version, sha}}``: the model files its batches brought results
up to). ``done + skipped + sum(errors) == listed`` when it is ``done``. The counters grow a
batch at a time (see :func:`_count_batch`); each batch document keeps its objects' outcomes
until it expires (:data:`EXPIRE_AT`: 30 days after it was counted, 90 after it was listed if
it never was; a run older than :data:`RESUMABLE_FOR` cannot be resumed).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from media_classifier import logs
from media_classifier.flows.backfill import redo_reason
from media_classifier.flows.upload import Flow
from media_classifier.store import clients, results
from media_classifier.store.uploads import Upload, custom_metadata, should_process

#: Objects listed per list task (one Storage list call).
PAGE_SIZE = 500
BATCHES = "batches"
#: Run and batch ids: what ``start`` and the listing write (and nothing a path could hide in).
ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
RUNNING, CANCELLED, DONE = "running", "cancelled", "done"
#: Outcomes of one object, as counted in the run document.
COUNTED = ("done", "skipped")
#: The batch documents' time-to-live field (the TTL policy in ``firestore.indexes.json``):
#: a run of a million objects leaves 50,000 of them, holding users' object names.
EXPIRE_AT = "expireAt"
#: A counted batch keeps its outcomes this long, to diagnose a run.
COUNTED_BATCH_TTL = timedelta(days=30)
#: An uncounted batch lives this long: the window in which a run can be resumed.
UNCOUNTED_BATCH_TTL = timedelta(days=90)
#: ``resume`` refuses runs started longer ago than this: their batches may be gone.
RESUMABLE_FOR = UNCOUNTED_BATCH_TTL - timedelta(days=1)


class RunExpired(Exception):
    """A run too old to resume: its unfinished batches may have expired (start a new one)."""


class Queue(Protocol):
    """Where tasks go: Cloud Tasks through firebase-admin, or a test's own list."""

    def enqueue(self, body: dict[str, Any], task_id: str) -> None:
        """Enqueue ``body``; a task id already used is silently accepted (not enqueued)."""


@dataclass
class RefreshOptions:
    """One deployment's refresh settings."""

    flow: Flow
    collection: str
    batch: int = 20
    page: int = PAGE_SIZE
    model_ref: Callable[[str], dict[str, str]] | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def task_id(*parts: object) -> str:
    """A Cloud Tasks task name: letters, digits, hyphens and underscores only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", "-".join(str(p) for p in parts))[:500]


def _ts() -> Any:
    from google.cloud import firestore

    return firestore.SERVER_TIMESTAMP


def _increment(n: int) -> Any:
    from google.cloud import firestore

    return firestore.Increment(n)


def start(
    db: Any,
    queue: Queue,
    settings: RefreshOptions,
    *,
    bucket: str,
    under: str,
    everything: bool = False,
    errors: frozenset[str] = frozenset(),
    run_id: str | None = None,
    fail_after: int | None = None,
) -> str:
    """Create a run and enqueue its first list task; returns the run id.

    ``fail_after``: for the emulator tests only (ignored elsewhere): each batch delivery
    raises after that many objects, as a worker dying mid-batch would.
    """
    if not under.startswith(settings.flow.prefix):
        raise ValueError(f"under must be inside the watched prefix {settings.flow.prefix!r}")
    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:8]
    ref = db.collection(settings.collection).document(run_id)
    ref.create(
        {
            "status": RUNNING,
            "bucket": bucket,
            "under": under,
            "options": {
                "everything": everything,
                "errors": sorted(errors),
                **({"failAfter": fail_after} if fail_after is not None else {}),
            },
            "batchSize": settings.batch,
            "listed": 0,
            "enqueued": 0,
            "done": 0,
            "skipped": 0,
            "errors": {},
            "listing": {"complete": False, "page": 0, "pageToken": None},
            "resumes": 0,
            "startedAt": _ts(),
            "updatedAt": _ts(),
            "finishedAt": None,
            "estimatedRemainingSec": None,
        }
    )
    queue.enqueue(
        {"run": run_id, "kind": "list", "page": 0, "pageToken": None}, task_id(run_id, "l0")
    )
    logs.refresh_started(run_id, bucket, under)
    return run_id


def cancel(db: Any, settings: RefreshOptions, run_id: str) -> bool:
    """Mark a running run cancelled; tasks delivered afterwards do nothing."""
    ref = db.collection(settings.collection).document(run_id)
    snap = ref.get()
    if not snap.exists or (snap.to_dict() or {}).get("status") != RUNNING:
        return False
    ref.update({"status": CANCELLED, "updatedAt": _ts()})
    logs.refresh_cancelled(run_id)
    return True


def resume(db: Any, queue: Queue, settings: RefreshOptions, run_id: str) -> int:
    """Run a cancelled (or stalled) run again: re-enqueue what is unfinished; returns tasks."""
    ref = db.collection(settings.collection).document(run_id)
    snap = ref.get()
    if not snap.exists:
        raise KeyError(run_id)
    run = snap.to_dict() or {}
    if run.get("status") == DONE:
        return 0
    started = run.get("startedAt")
    if isinstance(started, datetime) and settings.clock() - started > RESUMABLE_FOR:
        raise RunExpired(run_id)
    n = int(run.get("resumes") or 0) + 1
    ref.update({"status": RUNNING, "resumes": n, "updatedAt": _ts(), "finishedAt": None})
    enqueued = 0
    listing = run.get("listing") or {}
    if not listing.get("complete"):
        page = int(listing.get("page") or 0)
        body = {"run": run_id, "kind": "list", "page": page, "pageToken": listing.get("pageToken")}
        queue.enqueue(body, task_id(run_id, f"l{page}", f"r{n}"))
        enqueued += 1
    for batch in ref.collection(BATCHES).stream():
        data = batch.to_dict() or {}
        if not data.get("counted"):
            queue.enqueue(
                {"run": run_id, "kind": "batch", "batch": batch.id},
                task_id(run_id, batch.id, f"r{n}"),
            )
            enqueued += 1
    logs.refresh_resumed(run_id, enqueued)
    return enqueued


def handle_task(
    data: dict[str, Any],
    *,
    db: Any,
    queue: Queue,
    settings: RefreshOptions,
    bucket_of: Callable[[str], Any] | None = None,
) -> dict:
    """One task delivery (the task-queue function's body); raises to have it retried."""
    outcome = _task(data, db=db, queue=queue, settings=settings, bucket_of=bucket_of)
    fields = data if isinstance(data, dict) else {}
    logs.refresh_task(str(fields.get("run")), str(fields.get("kind")), outcome)
    return outcome


def _task(
    data: Any,
    *,
    db: Any,
    queue: Queue,
    settings: RefreshOptions,
    bucket_of: Callable[[str], Any] | None,
) -> dict:
    if not isinstance(data, dict):
        return {"ignored": "not a refresh task"}
    run_id, batch_id = data.get("run"), data.get("batch")
    if not (isinstance(run_id, str) and ID.fullmatch(run_id)):
        return {"ignored": "no such run"}
    ref = db.collection(settings.collection).document(run_id)
    snap = ref.get()
    if not snap.exists:
        return {"ignored": "no such run"}
    run = snap.to_dict() or {}
    if run.get("status") != RUNNING:
        return {"ignored": f"run is {run.get('status')}"}
    if data.get("kind") == "list":
        bucket = (bucket_of or clients.bucket)(run["bucket"])
        return _list_page(
            data, run_id, run, ref, db=db, bucket=bucket, queue=queue, settings=settings
        )
    if data.get("kind") == "batch" and isinstance(batch_id, str) and ID.fullmatch(batch_id):
        fail_after = (run.get("options") or {}).get("failAfter")
        return _run_batch(
            batch_id, run_id, run, ref, db=db, settings=settings, fail_after=fail_after
        )
    return {"ignored": "unknown task kind"}


def _describe(blob: Any) -> dict[str, Any]:
    return {
        "name": blob.name,
        "generation": int(blob.generation or 0),
        "size": int(blob.size or 0),
        "contentType": blob.content_type,
        "metadata": dict(custom_metadata(getattr(blob, "metadata", None))),
    }


def _list_page(
    data: dict[str, Any],
    run_id: str,
    run: dict,
    ref: Any,
    *,
    db: Any,
    bucket: Any,
    queue: Queue,
    settings: RefreshOptions,
) -> dict:
    from google.cloud import firestore

    page = int(data.get("page") or 0)
    blobs = bucket.list_blobs(
        prefix=run["under"], max_results=settings.page, page_token=data.get("pageToken")
    )
    pages = blobs.pages
    objects = [_describe(b) for b in next(pages, [])]
    next_token = blobs.next_page_token
    objects = [o for o in objects if should_process(o["name"], settings.flow.prefix)]
    size = int(run.get("batchSize") or settings.batch)
    for index in range(0, len(objects), size):
        batch_id = f"{page:06d}-{index // size:04d}"
        batch_ref = ref.collection(BATCHES).document(batch_id)
        chunk = objects[index : index + size]

        @firestore.transactional
        def create(tx: Any, batch_ref: Any = batch_ref, chunk: list = chunk) -> bool:
            if batch_ref.get(transaction=tx).exists:
                return False  # a second delivery of this list task: counted already
            expires = settings.clock() + UNCOUNTED_BATCH_TTL
            tx.create(
                batch_ref,
                {"objects": chunk, "outcomes": {}, "enqueued": False, EXPIRE_AT: expires},
            )
            tx.update(ref, {"listed": _increment(len(chunk)), "updatedAt": _ts()})
            return True

        create(db.transaction())
        queue.enqueue(
            {"run": run_id, "kind": "batch", "batch": batch_id}, task_id(run_id, batch_id)
        )

        @firestore.transactional
        def mark(tx: Any, batch_ref: Any = batch_ref) -> None:
            if not (batch_ref.get(transaction=tx).to_dict() or {}).get("enqueued"):
                tx.update(batch_ref, {"enqueued": True})
                tx.update(ref, {"enqueued": _increment(1), "updatedAt": _ts()})

        mark(db.transaction())
    listing = {"complete": not next_token, "page": page + 1, "pageToken": next_token}
    ref.update({"listing": listing, "updatedAt": _ts()})
    if next_token:
        body = {"run": run_id, "kind": "list", "page": page + 1, "pageToken": next_token}
        queue.enqueue(body, task_id(run_id, f"l{page + 1}", f"r{run.get('resumes') or 0}"))
    else:
        _finish_if_complete(db, ref)
    return {"listed": len(objects), "page": page}


def _run_batch(
    batch_id: str,
    run_id: str,
    run: dict,
    ref: Any,
    *,
    db: Any,
    settings: RefreshOptions,
    fail_after: Any = None,
) -> dict:
    batch_ref = ref.collection(BATCHES).document(batch_id)
    snap = batch_ref.get()
    if not snap.exists:
        return {"ignored": "no such batch"}
    batch = snap.to_dict() or {}
    options = run.get("options") or {}
    everything = bool(options.get("everything"))
    also = frozenset(options.get("errors") or ())
    handled = 0
    for i, obj in enumerate(batch.get("objects") or []):
        if str(i) in (batch.get("outcomes") or {}):
            continue  # recorded by an earlier delivery of this task
        if fail_after is not None and handled >= int(fail_after) and clients.running_in_emulator():
            # Fault injection for the emulator tests only: a worker dying mid-batch.
            raise RuntimeError(f"injected failure after {handled} objects")
        if i and i % 10 == 0 and (ref.get().to_dict() or {}).get("status") != RUNNING:
            return {"stopped": "run cancelled", "handled": handled}
        outcome = _one(
            obj, run["bucket"], db=db, settings=settings, everything=everything, also=also
        )
        # On the batch document only: no other task writes it, so no contention.
        batch_ref.update({f"outcomes.`{i}`": outcome})
        handled += 1
    _count_batch(db, ref, batch_ref, settings)
    _finish_if_complete(db, ref)
    return {"handled": handled}


def _one(
    obj: dict,
    bucket: str,
    *,
    db: Any,
    settings: RefreshOptions,
    everything: bool,
    also: frozenset[str],
) -> str:
    """Run the trigger's flow for one listed object; its outcome (``done``, ``skipped``, a code)."""
    upload = Upload(
        bucket,
        obj["name"],
        int(obj["generation"]),
        int(obj.get("size") or 0),
        obj.get("contentType"),
        tuple(sorted((obj.get("metadata") or {}).items())),
    )
    flow = settings.flow
    try:
        current = settings.model_ref(flow.model_for(upload.name)) if settings.model_ref else None
    except KeyError:
        current = None

    def redo(existing: dict[str, Any]) -> str | None:
        if current is None:
            return None
        return redo_reason(existing, current, everything=everything, also=also)

    status = flow.run(upload, db, redo)
    if status == results.STATUS_ERROR:
        doc = db.collection(flow.collection).document(results.doc_id(upload.name)).get()
        return str(((doc.to_dict() or {}).get("error") or {}).get("code") or "INTERNAL")
    return "done" if status == results.STATUS_DONE else "skipped"


def _models_of(objects: list[dict], settings: RefreshOptions) -> dict[str, dict[str, str]]:
    """The model files a batch's objects were brought up to (``{id: {id, name, version, sha}}``).

    Recorded on the run so an admin sees which model a refresh brought results to; a
    model no longer served (a route to a removed file) is left out, its objects are errors.
    """
    if settings.model_ref is None:
        return {}
    models: dict[str, dict[str, str]] = {}
    for model_id in {settings.flow.model_for(str(o.get("name"))) for o in objects}:
        with contextlib.suppress(KeyError):
            models[model_id] = settings.model_ref(model_id)
    return models


def _count_batch(db: Any, ref: Any, batch_ref: Any, settings: RefreshOptions) -> None:
    """Add a finished batch's outcomes to the run's counters, once.

    Why per batch and not per object: every task writes the one run document, and a
    Firestore document sustains about one write per second; one increment per batch of
    ``REFRESH_BATCH_SIZE`` objects keeps a fast refresh under it (500 objects/s with batches
    of 100 is 5 writes/s, in bursts that blind increments absorb). Only the batch document
    is read in the transaction, so concurrent tasks never contend on the run document;
    ``counted`` makes a second delivery add nothing.
    """
    from google.cloud import firestore
    from google.cloud.firestore_v1.field_path import FieldPath

    @firestore.transactional
    def count(tx: Any) -> bool:
        batch = batch_ref.get(transaction=tx).to_dict() or {}
        outcomes = batch.get("outcomes") or {}
        if batch.get("counted") or len(outcomes) < len(batch.get("objects") or []):
            return False
        tally: dict[str, int] = {}
        for outcome in outcomes.values():
            key = outcome if outcome in COUNTED else f"errors.{outcome}"
            tally[key] = tally.get(key, 0) + 1
        expires = settings.clock() + COUNTED_BATCH_TTL
        tx.update(batch_ref, {"counted": True, EXPIRE_AT: expires})
        models = {
            FieldPath("models", model_id).to_api_repr(): model
            for model_id, model in _models_of(batch.get("objects") or [], settings).items()
        }
        increments = {k: _increment(n) for k, n in tally.items()}
        tx.update(ref, {**increments, **models, "updatedAt": _ts()})
        return True

    from google.api_core import exceptions

    if not count(db.transaction()):
        return
    snap = ref.get()
    run = snap.to_dict() or {}
    started, handled = run.get("startedAt"), _handled(run)
    if isinstance(started, datetime) and handled:
        rate = handled / max((settings.clock() - started).total_seconds(), 1e-3)
        remaining = round(max(int(run.get("listed") or 0) - handled, 0) / rate, 1)
        # Only over what was read: a later count (or the end of the run) wins.
        with contextlib.suppress(exceptions.FailedPrecondition, exceptions.Conflict):
            option = db.write_option(last_update_time=snap.update_time)
            ref.update({"estimatedRemainingSec": remaining}, option=option)


def _handled(run: dict) -> int:
    errors = run.get("errors") or {}
    return (
        int(run.get("done") or 0)
        + int(run.get("skipped") or 0)
        + sum(int(v) for v in errors.values())
    )


def _finish_if_complete(db: Any, ref: Any) -> None:
    """Mark the run done once listing is complete and every listed object is handled."""
    from google.cloud import firestore

    @firestore.transactional
    def finish(tx: Any) -> bool:
        run = ref.get(transaction=tx).to_dict() or {}
        if run.get("status") != RUNNING or not (run.get("listing") or {}).get("complete"):
            return False
        if _handled(run) < int(run.get("listed") or 0):
            return False
        tx.update(
            ref,
            {"status": DONE, "finishedAt": _ts(), "updatedAt": _ts(), "estimatedRemainingSec": 0},
        )
        return True

    if finish(db.transaction()):
        logs.refresh_finished(ref.id)
