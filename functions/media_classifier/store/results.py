"""Result documents in Firestore: deterministic ids, generation-aware preconditions.

Storage events arrive at least once, sometimes late and out of order. The rules:

* one document per object, id = ``encodeURIComponent(object name)``, so a client
  computes it and a second delivery finds the same document (never search-then-write);
* a result belongs to one object *generation*: an event for an older generation never
  overwrites a newer one, a newer generation (re-upload) replaces the document;
* every write after the claim carries a ``last_update_time`` precondition, so two
  deliveries racing for the same document cannot both win.

Per-frame detail of a video goes to a subcollection in chunks, keeping the document
far below Firestore's 1 MiB limit for any video length.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: Firestore's limit on a document id, in bytes (encoded ids are ASCII).
MAX_ID_BYTES = 1500
#: Subcollection of per-frame detail, ``{collection}/{docId}/frames/chunk-000``...
FRAMES_SUBCOLLECTION = "frames"
FRAMES_PER_CHUNK = 500
#: A ``processing`` claim older than this is taken over (the worker died mid-way).
STALE_CLAIM = timedelta(minutes=12)
#: Workers that may take one generation's claim before :mod:`flows.recovery` gives up on it:
#: the event's, then one retry.
MAX_ATTEMPTS = 2

STATUS_PROCESSING = "processing"
STATUS_DONE = "done"
STATUS_ERROR = "error"
TERMINAL = (STATUS_DONE, STATUS_ERROR)


def doc_id(object_name: str) -> str:
    """The result document id: JavaScript's ``encodeURIComponent(object_name)``.

    Firestore ids are limited to 1,500 bytes, and a legal 1,024-byte object name can
    encode to three times that. Such names get ``sha256-`` + the hex SHA-256 of the
    UTF-8 name instead (documented for clients; ``crypto.subtle.digest`` computes it).
    """
    encoded = urllib.parse.quote(object_name, safe="!~*'()")
    if len(encoded) <= MAX_ID_BYTES:
        return encoded
    return "sha256-" + hashlib.sha256(object_name.encode("utf-8")).hexdigest()


def frame_chunks(frames: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split per-frame detail into documents of at most :data:`FRAMES_PER_CHUNK` frames."""
    return [frames[i : i + FRAMES_PER_CHUNK] for i in range(0, len(frames), FRAMES_PER_CHUNK)]


def chunk_id(index: int) -> str:
    return f"chunk-{index:03d}"


@dataclass(frozen=True)
class Decision:
    """What to do with an event given the current document (pure, see :func:`decide`)."""

    claim: bool
    reason: str


def decide(
    existing: dict[str, Any] | None,
    generation: int,
    now: datetime,
    redo: Callable[[dict[str, Any]], str | None] | None = None,
) -> Decision:
    """Whether an event for ``generation`` may claim the document ``existing``.

    ``redo`` (the backfill's policy, :func:`flows.backfill.redo_reason`) may reopen a finished
    result of the same generation, e.g. one written by an older model; it names why, or
    returns None. Events never pass it. Pure, so the idempotency rules are unit-tested
    without a server.
    """
    if existing is None:
        return Decision(True, "new")
    current = int(existing.get("generation") or 0)
    if current > generation:
        return Decision(False, f"a newer generation ({current}) owns the result")
    if current < generation:
        return Decision(True, "newer generation")
    status = existing.get("status")
    if status in TERMINAL:
        why = redo(existing) if redo is not None else None
        return Decision(True, why) if why else Decision(False, f"already {status}")
    if not is_stale(existing, now):
        return Decision(False, "another delivery is processing it")
    return Decision(True, "stale processing claim")


def is_stale(existing: dict[str, Any], now: datetime) -> bool:
    """A ``processing`` claim nobody has touched for :data:`STALE_CLAIM`: its worker died.

    (A claim without a readable ``updatedAt`` counts as stale: it cannot be shown alive.)
    """
    if existing.get("status") != STATUS_PROCESSING:
        return False
    updated = existing.get("updatedAt")
    return not (isinstance(updated, datetime) and now - updated < STALE_CLAIM)


def attempts_of(existing: dict[str, Any]) -> int:
    """A claim's ``attempts`` (1 for documents written before it was recorded).

    A value this code did not write counts as :data:`MAX_ATTEMPTS`: no history, so
    no retry loop.
    """
    try:
        return int(existing.get("attempts") or 1)
    except (TypeError, ValueError):
        return MAX_ATTEMPTS


def next_attempt(existing: dict[str, Any] | None, generation: int) -> int:
    """The ``attempts`` a new claim records: how many workers have taken this generation.

    1 for a new upload, a new generation or a reopened finished result; one more when
    a worker takes over the same generation's stale claim (its predecessor died), which
    is what lets :mod:`flows.recovery` stop retrying a file that kills every worker.
    """
    if (
        existing is not None
        and existing.get("status") == STATUS_PROCESSING
        and int(existing.get("generation") or 0) == generation
    ):
        return attempts_of(existing) + 1
    return 1


@dataclass
class Claim:
    """A document this delivery owns until it writes its terminal state."""

    ref: Any
    update_time: Any
    previous_chunks: int


def _server_timestamp() -> Any:
    from google.cloud import firestore

    return firestore.SERVER_TIMESTAMP


def claim(
    db: Any,
    collection: str,
    object_name: str,
    generation: int,
    fields: dict[str, Any],
    redo: Callable[[dict[str, Any]], str | None] | None = None,
) -> Claim | Decision:
    """Mark the document ``processing`` for this generation, or say why not.

    ``fields`` are the upload's descriptive fields (bucket, path, owner, size, ...). Every
    result field is reset, so a re-upload never shows the previous file's labels.
    """
    from google.api_core import exceptions

    ref = db.collection(collection).document(doc_id(object_name))
    body = {
        **fields,
        "generation": str(generation),
        "status": STATUS_PROCESSING,
        "labels": [],
        "error": None,
        "video": None,
        "duplicateOf": None,
        "model": None,
        "timings": {},
        "updatedAt": _server_timestamp(),
    }
    for _ in range(5):
        snap = ref.get()
        existing = snap.to_dict() if snap.exists else None
        decision = decide(existing, generation, datetime.now(UTC), redo)
        if not decision.claim:
            return decision
        previous_chunks = _chunks_in_place(ref, existing)
        body["attempts"] = next_attempt(existing, generation)
        try:
            if existing is None:
                result = ref.create(body)
            else:
                option = db.write_option(last_update_time=snap.update_time)
                result = ref.update(body, option=option)
        except (exceptions.AlreadyExists, exceptions.Conflict, exceptions.FailedPrecondition):
            continue  # another delivery wrote first: look again
        return Claim(ref=ref, update_time=result.update_time, previous_chunks=previous_chunks)
    return Decision(False, "the document kept changing under us")


def _chunks_in_place(ref: Any, existing: dict[str, Any] | None) -> int:
    """How many frame chunks the document has now, so :func:`finish` removes the extra.

    A finished result says it in ``video.frameChunks``. A ``processing`` claim does not:
    the worker that took it (from a re-uploaded video, say) knows the count only in
    memory, so the subcollection itself is read (taking over a dead claim, or deleting an
    object while it is processed, is rare).
    """
    if existing is None:
        return 0
    if existing.get("status") != STATUS_PROCESSING:
        return int((existing.get("video") or {}).get("frameChunks") or 0)
    ids = (snap.id for snap in ref.collection(FRAMES_SUBCOLLECTION).stream())
    indices = [int(i[6:]) for i in ids if i.startswith("chunk-") and i[6:].isdigit()]
    return max(indices, default=-1) + 1


#: Writes that go with a result's: ``(document reference, fields)`` sets it, ``(ref, None)``
#: deletes it. They commit with the result or not at all (e.g. the upload's vectors).
Alongside = Sequence[tuple[Any, dict[str, Any] | None]]


def _add(batch: Any, alongside: Alongside) -> None:
    for ref, body in alongside:
        if body is None:
            batch.delete(ref)
        else:
            batch.set(ref, body)


def finish(
    db: Any,
    owned: Claim,
    fields: dict[str, Any],
    frames: list[dict[str, Any]] | None = None,
    alongside: Alongside = (),
) -> bool:
    """Write the terminal state (and per-frame detail) atomically; False if superseded."""
    from google.api_core import exceptions

    batch = db.batch()
    _add(batch, alongside)
    chunks = frame_chunks(frames or [])
    frames_ref = owned.ref.collection(FRAMES_SUBCOLLECTION)
    for index, chunk in enumerate(chunks):
        batch.set(frames_ref.document(chunk_id(index)), {"index": index, "frames": chunk})
    for index in range(len(chunks), owned.previous_chunks):
        batch.delete(frames_ref.document(chunk_id(index)))
    body = dict(fields)
    if body.get("video") is not None:
        body["video"] = {
            **body["video"],
            "frameChunks": len(chunks),
            "framesCollection": f"{owned.ref.path}/{FRAMES_SUBCOLLECTION}",
        }
    body["updatedAt"] = _server_timestamp()
    batch.update(owned.ref, body, option=db.write_option(last_update_time=owned.update_time))
    try:
        batch.commit()
    except (exceptions.FailedPrecondition, exceptions.NotFound, exceptions.Conflict):
        return False
    return True


def stale_claims(db: Any, collection: str, now: datetime, scan: int) -> list[Any]:
    """Snapshots of ``processing`` claims whose worker died, oldest first.

    Equality on ``status`` alone (no composite index to deploy) and the age checked
    here: live claims are few (one per running worker), and each sweep turns the stale
    ones terminal, so ``scan`` documents are plenty.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = db.collection(collection).where(filter=FieldFilter("status", "==", STATUS_PROCESSING))
    stale = [snap for snap in query.limit(scan).stream() if is_stale(snap.to_dict() or {}, now)]
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(stale, key=lambda snap: (snap.to_dict() or {}).get("updatedAt") or oldest)


def abandon(db: Any, snapshot: Any, fields: dict[str, Any]) -> bool:
    """Write a terminal state over the claim read as ``snapshot``; False if it changed since.

    One precondition write: a worker that revived the claim in between wins.
    """
    from google.api_core import exceptions

    body = {**fields, "updatedAt": _server_timestamp()}
    option = db.write_option(last_update_time=snapshot.update_time)
    try:
        snapshot.reference.update(body, option=option)
    except (exceptions.FailedPrecondition, exceptions.NotFound, exceptions.Conflict):
        return False
    return True


def delete_result(
    db: Any, collection: str, object_name: str, generation: int, alongside: Alongside = ()
) -> bool:
    """Delete the result (and its frames) of a deleted object, unless a newer one exists."""
    from google.api_core import exceptions

    ref = db.collection(collection).document(doc_id(object_name))
    snap = ref.get()
    if not snap.exists:
        return False
    data = snap.to_dict() or {}
    if int(data.get("generation") or 0) > generation:
        return False
    chunks = _chunks_in_place(ref, data)
    batch = db.batch()
    _add(batch, alongside)
    for index in range(chunks):
        batch.delete(ref.collection(FRAMES_SUBCOLLECTION).document(chunk_id(index)))
    batch.delete(ref, option=db.write_option(last_update_time=snap.update_time))
    try:
        batch.commit()
    except (exceptions.FailedPrecondition, exceptions.NotFound, exceptions.Conflict):
        return False
    return True
