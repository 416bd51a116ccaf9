"""Every log message of the functions, in one place, as structured JSON.

Why: Cloud Logging parses one JSON object per line (``severity``, ``message`` and any
fields), so operators filter by ``event`` or ``code`` instead of grepping prose, and a
reviewer can check in one file that no token or file content is ever logged: callers
pass object names, sizes, codes and timings, nothing else.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _write(severity: str, event: str, message: str, **fields: Any) -> None:
    entry = {"severity": severity, "message": message, "event": event, **fields}
    # stderr for every severity: Cloud Logging reads the JSON severity from either
    # stream, and stdout stays free for the CLI's results.
    print(json.dumps(entry, ensure_ascii=False, default=str), file=sys.stderr, flush=True)


def ignored_outside_prefix(name: str, prefix: str) -> None:
    _write(
        "DEBUG", "ignored", f"ignoring {name!r}: outside the watched prefix {prefix!r}", path=name
    )


def duplicate_event(name: str, generation: str, reason: str) -> None:
    _write(
        "INFO",
        "duplicate",
        f"skipping {name!r} generation {generation}: {reason}",
        path=name,
        generation=generation,
        reason=reason,
    )


def started(name: str, generation: str, size: int, model: str) -> None:
    _write(
        "INFO",
        "started",
        f"classifying {name!r}",
        path=name,
        generation=generation,
        size=size,
        model=model,
    )


def finished(name: str, generation: str, kind: str, top: str | None, timings: dict) -> None:
    _write(
        "INFO",
        "done",
        f"classified {name!r} as {top!r}",
        path=name,
        generation=generation,
        kind=kind,
        top=top,
        timings=timings,
    )


def media_error(name: str, generation: str, code: str, message: str) -> None:
    _write(
        "WARNING",
        "media_error",
        f"{name!r}: {code}: {message}",
        path=name,
        generation=generation,
        code=code,
    )


def internal_error(name: str, generation: str, exc: BaseException) -> None:
    _write(
        "ERROR",
        "internal_error",
        f"{name!r}: {type(exc).__name__}: {exc}",
        path=name,
        generation=generation,
        code="INTERNAL",
        exception=type(exc).__name__,
    )


def superseded(name: str, generation: str) -> None:
    _write(
        "INFO",
        "superseded",
        f"result for {name!r} generation {generation} dropped: a newer event owns the document",
        path=name,
        generation=generation,
    )


def result_deleted(name: str, generation: str, deleted: bool) -> None:
    verb = "deleted" if deleted else "kept (a newer generation exists or none was found)"
    _write(
        "INFO",
        "deleted",
        f"result of {name!r} {verb}",
        path=name,
        generation=generation,
        deleted=deleted,
    )


def model_loaded(key: str, name: str, version: str, sha: str, millis: float) -> None:
    _write(
        "INFO",
        "model_loaded",
        f"loaded model {key} ({name} {version}, sha {sha}) in {millis:.0f} ms",
        model=key,
        version=version,
        sha=sha,
        ms=round(millis, 1),
    )


def request_failed(endpoint: str, code: str, message: str) -> None:
    _write(
        "WARNING", "request_error", f"{endpoint}: {code}: {message}", endpoint=endpoint, code=code
    )


def request_served(endpoint: str, model: str, kind: str, top: str | None, timings: dict) -> None:
    _write(
        "INFO",
        "request_done",
        f"{endpoint}: classified {kind} as {top!r}",
        endpoint=endpoint,
        model=model,
        kind=kind,
        top=top,
        timings=timings,
    )


def request_internal_error(endpoint: str, exc: BaseException) -> None:
    """The full exception stays in the logs; the client only gets a fixed message."""
    _write(
        "ERROR",
        "request_internal_error",
        f"{endpoint}: {type(exc).__name__}: {exc}",
        endpoint=endpoint,
        code="INTERNAL",
        exception=type(exc).__name__,
    )


def backfill_started(bucket: str, under: str, after: str | None, dry_run: bool) -> None:
    where = f"gs://{bucket}/{under}" + (f" after {after!r}" if after else "")
    _write(
        "INFO",
        "backfill_started",
        f"backfill {'(dry run) ' if dry_run else ''}of {where}",
        bucket=bucket,
        under=under,
        after=after,
        dryRun=dry_run,
    )


def backfill_progress(counts: dict[str, int], last: str | None, seconds: float) -> None:
    summary = ", ".join(f"{value} {key}" for key, value in counts.items())
    _write(
        "INFO",
        "backfill_progress",
        f"backfill: {summary} in {seconds:.0f} s; last {last!r}",
        counts=counts,
        last=last,
    )


def backfill_finished(summary: dict[str, Any]) -> None:
    state = "complete" if summary.get("complete") else "stopped (resumable)"
    _write("INFO", "backfill_finished", f"backfill {state}", **summary)


def recovery_retry(name: str, generation: str, attempts: int) -> None:
    _write(
        "WARNING",
        "recovery_retry",
        f"retrying {name!r}: its worker died after {attempts} attempt(s)",
        path=name,
        generation=generation,
        attempts=attempts,
    )


def recovery_gave_up(name: str, generation: str, attempts: int) -> None:
    _write(
        "ERROR",
        "recovery_gave_up",
        f"gave up on {name!r}: its workers died {attempts} times",
        path=name,
        generation=generation,
        attempts=attempts,
        code="INTERRUPTED",
    )


def recovery_skipped(doc_id: str, reason: str) -> None:
    _write("WARNING", "recovery_skipped", f"left {doc_id!r} alone: {reason}", doc=doc_id)


def recovery_finished(summary: dict[str, int]) -> None:
    done = ", ".join(f"{value} {key}" for key, value in summary.items())
    _write("INFO", "recovery_finished", f"recovery: {done}", **summary)


def refresh_started(run: str, bucket: str, under: str) -> None:
    _write("INFO", "refresh_started", f"refresh {run} started: gs://{bucket}/{under}", run=run)


def refresh_cancelled(run: str) -> None:
    _write("INFO", "refresh_cancelled", f"refresh {run} cancelled", run=run)


def refresh_resumed(run: str, tasks: int) -> None:
    _write("INFO", "refresh_resumed", f"refresh {run} resumed: {tasks} tasks", run=run, tasks=tasks)


def refresh_finished(run: str) -> None:
    _write("INFO", "refresh_finished", f"refresh {run} finished", run=run)


def refresh_task(run: str, kind: str, outcome: dict[str, Any]) -> None:
    _write("INFO", "refresh_task", f"refresh {run}: {kind} task {outcome}", run=run, kind=kind)


def vectors_failed(name: str, generation: str, step: str, exc: BaseException) -> None:
    """The labels were stored but the similarity step was not (the result stays ``done``)."""
    _write(
        "WARNING",
        "vectors_failed",
        f"{step} failed for {name!r}: {type(exc).__name__}: {exc}"[:500],
        path=name,
        generation=generation,
        step=step,
    )


def similar_served(endpoint: str, model: str, matches: int) -> None:
    _write(
        "INFO",
        "similar_served",
        f"{endpoint}: {matches} matches",
        endpoint=endpoint,
        model=model,
        matches=matches,
    )
