"""How a similarity search scales: latency in Google's Firestore emulator, reads and cost on paper.

    .venv/bin/python -m bench.vector_search                       # 10,000 and 100,000 vectors
    .venv/bin/python -m bench.vector_search --sizes 2000 --queries 5 --out /tmp/v.md

One user's library of N uploads is written to the emulator as the functions write it
(:func:`media_classifier.store.embeddings.documents`, 1,280-dimensional unit vectors like
the shipped models' ``embedding`` output), then the two searches the product runs are
timed: ``/v1/similar`` (pictures and video segments, ``searchable``) and the near-duplicate
check on upload (``whole``), both through :func:`media_classifier.store.embeddings.nearest`
with the owner and model pre-filters. The vectors are random directions: a flat (exact)
index reads every vector of the owner whatever they hold, so the time does not depend on
them.

What is measured and what is not: the latency is the emulator's, on this machine, one
query at a time (the emulator scans in memory; production Firestore runs the same query
on its own servers, with its own latency). Reads and dollars are computed from Firestore's
published billing rule for vector search (one read per batch of up to 100 vector index
entries the query reads, plus one per document returned) at the list price used in
``bench/capacity.py``; they are not measured.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.capacity import PRICES
from media_classifier.store import embeddings
from media_classifier.store.results import doc_id
from tools import localstack

DIMS = 1280
K = 10
COLLECTION = "benchEmbeddings"
#: Firestore's vector search bills one read per this many index entries read.
ENTRIES_PER_READ = 100
BATCH = 200


@contextlib.contextmanager
def firestore_emulator(heap: str = "8g") -> Iterator[Any]:
    """Google's Firestore emulator alone, on a free port: a client for it.

    Not the whole local stack: filling 100,000 vectors takes the emulator a while, and the
    stack's fixed ports and machine-wide lock would keep every test waiting meanwhile.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    jar = localstack.cloud_sdk_file(*localstack.FIRESTORE_SDK)
    if jar is None:
        raise localstack.StackError(localstack.FIRESTORE_MISSING)
    with tempfile.TemporaryDirectory(prefix="mc-vectors-") as tmp:
        launcher = localstack.write_launcher_jar(Path(tmp) / "firestore.jar", jar)
        with socket.socket() as probe:
            probe.bind((localstack.HOST, 0))
            port = probe.getsockname()[1]
        java = localstack.find_java()
        args = [str(java), f"-Xmx{heap}", "-jar", str(launcher)]
        args += [f"--host={localstack.HOST}", f"--port={port}"]
        log = (Path(tmp) / "firestore.log").open("w")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not localstack.port_open(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise localstack.StackError(localstack.tail(Path(tmp) / "firestore.log"))
                time.sleep(0.25)
            os.environ["FIRESTORE_EMULATOR_HOST"] = f"{localstack.HOST}:{port}"
            yield firestore.Client(
                project=localstack.PROJECT_ID, credentials=AnonymousCredentials()
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def _cpu() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    return f"{model}, {len(os.sched_getaffinity(0))} CPUs"


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(db: Any, owner: str, n: int, rng: np.random.Generator) -> float:
    """Write ``n`` picture vectors of one owner, as the trigger writes them; seconds taken."""
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        batch = db.batch()
        for i, vector in enumerate(_unit(rng, min(BATCH, n - first)), start=first):
            name = f"uploads/{owner}/photo-{i:06d}.jpg"
            base = {
                "owner": owner,
                "path": name,
                "generation": "1",
                "kind": "image",
                "modelId": "bench",
                "modelSha": "bench",
            }
            docs = embeddings.documents(doc_id(name), base, vector.tolist(), [], [])
            for doc, fields in docs.items():
                batch.set(
                    db.collection(COLLECTION).document(doc), embeddings.firestore_fields(fields)
                )
        batch.commit()
    return time.perf_counter() - started


def time_queries(
    db: Any, owner: str, queries: int, rng: np.random.Generator, whole: bool
) -> list[float]:
    """Milliseconds of each of ``queries`` searches (one warm-up first)."""
    vectors = _unit(rng, queries + 1)
    times = []
    for i, vector in enumerate(vectors):
        started = time.perf_counter()
        found = embeddings.nearest(
            db,
            COLLECTION,
            vector.tolist(),
            owner=owner,
            model_sha="bench",
            limit=K,
            whole=whole,
        )
        elapsed = (time.perf_counter() - started) * 1000
        assert len(found) == K, found
        if i:
            times.append(elapsed)
    return times


def billed_reads(n: int) -> int:
    """Reads one search is billed for over ``n`` of the owner's vectors (pricing rule)."""
    return math.ceil(n / ENTRIES_PER_READ) + K


def report(rows: list[dict[str, Any]]) -> str:
    price = PRICES["firestore_read"]
    lines = [
        f"Measured by `python -m bench.vector_search` on {_cpu()} (load average"
        f" {os.getloadavg()[0]:.1f} at the end), Google's Firestore emulator; k = {K},"
        f" {DIMS} dimensions, one owner's vectors, exact (flat) search.",
        "",
        "| vectors (one owner) | write, docs/s | /v1/similar median (p90) | duplicate check"
        " median (p90) | reads per search | $ per 1,000 searches |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        reads = billed_reads(row["n"])
        lines.append(
            f"| {row['n']:,} | {row['n'] / row['write_s']:,.0f} "
            f"| {row['similar_ms'][0]:.0f} ms ({row['similar_ms'][1]:.0f}) "
            f"| {row['whole_ms'][0]:.0f} ms ({row['whole_ms'][1]:.0f}) "
            f"| {reads:,} | {reads * 1000 * price:.4f} |"
        )
    lines += [
        "",
        f"Reads and dollars are computed, not measured: one read per {ENTRIES_PER_READ} vector"
        f" index entries read plus one per result, at ${price * 1e5:.2f} per 100,000 reads"
        " (the list price in `bench/capacity.py`). Latency is the emulator's on this machine;"
        " production Firestore's is its own.",
    ]
    return "\n".join(lines) + "\n"


def _median_p90(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vector_search", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    with firestore_emulator() as db:
        for n in args.sizes:
            owner = f"bench-{n}-{uuid.uuid4().hex[:6]}"
            write_s = fill(db, owner, n, rng)
            similar = time_queries(db, owner, args.queries, rng, whole=False)
            whole = time_queries(db, owner, args.queries, rng, whole=True)
            rows.append(
                {
                    "n": n,
                    "write_s": write_s,
                    "similar_ms": _median_p90(similar),
                    "whole_ms": _median_p90(whole),
                }
            )
            print(f"{n:,} vectors: written in {write_s:.0f} s; {rows[-1]}", flush=True)
    table = report(rows)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
