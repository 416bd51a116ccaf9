"""Burst load against the local stack: N uploads from several threads, then drain.

Why: Storage events arrive at least once and in bursts (a gallery sync, a backfill).
The product promise is one terminal document per upload, none lost and none
duplicated, however many arrive together. This script uploads N objects under one
fresh owner as fast as its threads can, waits until every object's document is
``done`` or ``error``, and reports as a table:

* lost: uploads without a terminal document when the wait ends;
* duplicated: documents for that owner beyond the N expected, documents whose
  generation is not the uploaded one, and (when the emulator log is readable)
  objects classified more than once;
* time to drain: from the first upload to the last terminal document, and the
  per-object latency (upload finished -> document terminal).

Usage (starts the stack unless ``MC_STACK_RUNNING=1`` says one is up)::

    .venv/bin/python -m tools.loadtest                 # N=200, 8 threads
    .venv/bin/python -m tools.loadtest -n 50 --threads 4 --json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

from tools.localstack import (  # noqa: E402
    DEFAULT_BUCKET,
    HOST,
    PORTS,
    PROJECT_ID,
    emulator_env,
    result_doc_id,
    running_stack,
)

SAMPLES = REPO_ROOT / "samples" / "images"
RESULTS_COLLECTION = "mediaResults"
TERMINAL = ("done", "error")
#: What loses events on the local stack, for failure messages (found with this script).
LOST_HINT = (
    "If the emulator log says 'Failed to load function', the Functions emulator started "
    "too many Python workers at once (FUNCTIONS_EMULATOR_PARALLEL, default 50) and they "
    "missed its 30 s start-up deadline (FUNCTIONS_DISCOVERY_TIMEOUT): those events are "
    "dropped. With FUNCTIONS_EMULATOR_PARALLEL=4 FUNCTIONS_DISCOVERY_TIMEOUT=120 in the "
    "stack's environment, 200 uploads drain with none lost."
)


@dataclass
class LoadReport:
    """What one burst did; ``ok`` is the pass/fail verdict."""

    n: int
    threads: int
    owner: str
    upload_seconds: float = 0.0
    drain_seconds: float = 0.0
    done: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    extra_documents: list[str] = field(default_factory=list)
    wrong_generation: list[str] = field(default_factory=list)
    classified_twice: list[str] = field(default_factory=list)
    log_checked: bool = False
    classified_in_log: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def terminal(self) -> int:
        return self.done + sum(self.errors.values())

    @property
    def ok(self) -> bool:
        return (
            self.terminal == self.n
            and not self.lost
            and not self.extra_documents
            and not self.wrong_generation
            and not self.classified_twice
        )

    def table(self) -> str:
        def pct(q: float) -> str:
            if not self.latencies:
                return "-"
            ordered = sorted(self.latencies)
            return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.1f} s"

        twice = (
            f"{len(self.classified_twice)} (log shows {self.classified_in_log} classified)"
            if self.log_checked
            else "n/a (no log)"
        )
        rate = self.n / self.drain_seconds if self.drain_seconds else 0.0
        rows = [
            ("uploads (threads)", f"{self.n} ({self.threads})"),
            ("upload burst", f"{self.upload_seconds:.1f} s"),
            ("terminal documents", f"{self.terminal} / {self.n}"),
            ("done / error", f"{self.done} / {sum(self.errors.values())} {self.errors or ''}"),
            ("lost (no terminal document)", str(len(self.lost))),
            ("duplicated: extra documents", str(len(self.extra_documents))),
            ("duplicated: wrong generation", str(len(self.wrong_generation))),
            ("duplicated: classified twice", twice),
            ("time to drain (first upload -> last result)", f"{self.drain_seconds:.1f} s"),
            ("throughput", f"{rate:.2f} uploads/s"),
            ("latency p50 / p95 / max", f"{pct(0.5)} / {pct(0.95)} / {pct(1.0)}"),
            ("verdict", "OK" if self.ok else "FAILED"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'metric':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
        return "\n".join(lines)

    def as_json(self) -> str:
        data = asdict(self)
        data.update(terminal=self.terminal, ok=self.ok)
        data["latency_median"] = statistics.median(self.latencies) if self.latencies else None
        del data["latencies"]
        return json.dumps(data, indent=2)


def sample_payloads() -> list[tuple[str, bytes, str]]:
    """The shipped sample photos: realistic sizes and decode costs, cycled over N uploads."""
    kinds = {".jpg": "image/jpeg", ".png": "image/png"}
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in kinds)
    if not files:
        raise SystemExit(f"no sample images in {SAMPLES}")
    return [(p.name, p.read_bytes(), kinds[p.suffix]) for p in files]


def emulator_clients() -> tuple[Any, Any]:
    """(bucket, firestore client) on the local emulators, with anonymous credentials."""
    os.environ.update(emulator_env())
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore, storage

    creds = AnonymousCredentials()
    bucket = storage.Client(
        project=PROJECT_ID,
        credentials=creds,
        client_options={"api_endpoint": f"http://{HOST}:{PORTS['storage']}"},
    ).bucket(DEFAULT_BUCKET)
    return bucket, firestore.Client(project=PROJECT_ID, credentials=creds)


def _classified_counts(log_path: Path | None, names: set[str]) -> dict[str, int] | None:
    """How often each object was classified, from the functions' ``started`` log events."""
    if log_path is None or not log_path.exists():
        return None
    counts: collections.Counter[str] = collections.Counter()
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            start = line.find('{"severity"')
            if start < 0 or '"event": "started"' not in line:
                continue
            try:
                entry = json.loads(line[start:])
            except ValueError:
                continue
            if entry.get("path") in names:
                counts[entry["path"]] += 1
    return dict(counts)


def run_load(
    bucket: Any,
    db: Any,
    *,
    n: int = 200,
    threads: int = 8,
    timeout: float = 600.0,
    stall: float = 120.0,
    owner: str | None = None,
    log_path: Path | None = None,
    progress: bool = False,
) -> LoadReport:
    """Upload ``n`` objects from ``threads`` threads and wait for their terminal documents.

    Waiting ends when all are terminal, after ``timeout`` seconds, or when no new
    document turned terminal for ``stall`` seconds (a lost event never arrives, so
    waiting out the whole timeout would only delay the verdict).
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    owner = owner or f"load-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    report = LoadReport(n=n, threads=threads, owner=owner)
    payloads = sample_payloads()
    jobs = []
    for i in range(n):
        file_name, data, ctype = payloads[i % len(payloads)]
        jobs.append((f"uploads/{owner}/burst/{i:04d}-{file_name}", data, ctype))
    uploaded_at: dict[str, float] = {}
    generations: dict[str, int] = {}

    def put(job: tuple[str, bytes, str]) -> None:
        name, data, ctype = job
        blob = bucket.blob(name)
        blob.upload_from_string(data, content_type=ctype)
        uploaded_at[name] = time.monotonic()
        generations[name] = int(blob.generation)

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, jobs))
    report.upload_seconds = time.monotonic() - started

    names = {name for name, _, _ in jobs}
    finished: dict[str, dict[str, Any]] = {}
    finished_at: dict[str, float] = {}
    owned_query = db.collection(RESULTS_COLLECTION).where(filter=FieldFilter("owner", "==", owner))
    deadline = started + timeout
    last_print = 0.0
    last_progress = time.monotonic()
    while True:
        now = time.monotonic()
        docs = {snap.id: snap.to_dict() or {} for snap in owned_query.stream()}
        for doc in docs.values():
            path = doc.get("path")
            if path in names and path not in finished and doc.get("status") in TERMINAL:
                finished[path] = doc
                finished_at[path] = now
                last_progress = now
        if progress and now - last_print > 5:
            print(f"  {len(finished)}/{n} terminal after {now - started:.0f} s", flush=True)
            last_print = now
        if len(finished) == n or now > deadline or now - last_progress > stall:
            break
        time.sleep(0.5)
    report.drain_seconds = (max(finished_at.values()) if finished_at else now) - started

    report.lost = sorted(names - finished.keys())
    expected_ids = {result_doc_id(name) for name in names}
    report.extra_documents = sorted(set(docs) - expected_ids)
    for path, doc in finished.items():
        if doc["status"] == "done":
            report.done += 1
        else:
            code = (doc.get("error") or {}).get("code", "?")
            report.errors[code] = report.errors.get(code, 0) + 1
        if str(doc.get("generation")) != str(generations[path]):
            report.wrong_generation.append(path)
        report.latencies.append(finished_at[path] - uploaded_at[path])
    counts = _classified_counts(log_path, names)
    if counts is not None:
        report.log_checked = True
        report.classified_twice = sorted(p for p, c in counts.items() if c > 1)
        report.classified_in_log = len(counts)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="uploads in the burst (default 200)")
    parser.add_argument("--threads", type=int, default=8, help="uploading threads (default 8)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for drain")
    parser.add_argument(
        "--stall", type=float, default=120, help="give up after this long without progress"
    )
    parser.add_argument("--log", type=Path, help="emulator log to count classifications in")
    parser.add_argument("--json", action="store_true", help="also print the report as JSON")
    args = parser.parse_args(argv)

    with running_stack() as stack:
        bucket, db = emulator_clients()
        log_path = args.log or (stack.firebase_log if stack is not None else None)
        print(f"burst of {args.n} uploads from {args.threads} threads...", flush=True)
        report = run_load(
            bucket,
            db,
            n=args.n,
            threads=args.threads,
            timeout=args.timeout,
            stall=args.stall,
            log_path=log_path,
            progress=True,
        )
    print(report.table())
    if args.json:
        print(report.as_json())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
