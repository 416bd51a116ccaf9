"""Compare: what a candidate model would answer for the uploads users already made.

Why: a retrained model's test-set accuracy does not say which of the labels users see
today would change once it is deployed (and the backfill redoes their results). This
command runs the candidate file through the functions' own pipeline over stored uploads,
the very generation each result describes, and compares its top label with the result's.
It writes nothing: no Firestore document, no Storage object.

    cd functions
    venv/bin/python -m media_classifier compare --model ../runs/x/export/x.int8.onnx --limit 200

Which results: ``done`` ones under ``--under`` (default: the watched prefix), in name
order, produced by the model the candidate would replace (``--against``, default: the
candidate's id, its file name up to the first dot). Results the candidate file itself
wrote (same content hash ``model.sha``) are not compared; the others are counted by the
file that wrote them (``resultsBySha``: ``null`` for results older than the hash), so a
bucket that still holds results of several older files says so. stdout: one JSON line per
object whose top label changes, then a summary (agreement, candidate errors, the most
common changes).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media_classifier import config
from media_classifier.errors import MediaError
from media_classifier.flows.backfill import list_uploads, with_results
from media_classifier.flows.fetch import classify_object
from media_classifier.inference.model import Model, ModelContractError
from media_classifier.store import clients, results
from media_classifier.store.uploads import Upload, generation_blob

#: Changes listed in the summary, most common first.
TOP_CHANGES = 10


def top_label(labels: list[dict[str, Any]] | None) -> str | None:
    """The first label of a result's ``labels`` (highest score first), if any."""
    return labels[0]["label"] if labels else None


def verdict(current: list[dict[str, Any]], candidate: list[dict[str, Any]]) -> str:
    """``same``, ``in top-k`` (the candidate's top label is among the current ones) or
    ``changed`` (pure)."""
    new = top_label(candidate)
    if new == top_label(current):
        return "same"
    return "in top-k" if new in {item["label"] for item in current} else "changed"


@dataclass
class Tally:
    """What a comparison found, object by object."""

    counts: Counter[str] = field(default_factory=Counter)
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Compared results by the content hash of the file that wrote them.
    by_sha: Counter[str | None] = field(default_factory=Counter)

    def add(self, outcome: str, current: str | None = None, new: str | None = None) -> None:
        self.counts[outcome] += 1
        if outcome in ("in top-k", "changed"):
            self.changes[(str(current), str(new))] += 1

    def compared(self) -> int:
        """Objects the candidate answered for (its errors excluded)."""
        return sum(self.counts[k] for k in ("same", "in top-k", "changed"))

    def summary(self) -> dict[str, Any]:
        compared = self.compared()
        return {
            "summary": True,
            "compared": compared,
            "agreement": round(self.counts["same"] / compared, 4) if compared else None,
            **dict(self.counts),
            "resultsBySha": [
                {"sha": sha, "count": n} for sha, n in self.by_sha.most_common(TOP_CHANGES)
            ],
            "topChanges": [
                {"from": old, "to": new, "count": n}
                for (old, new), n in self.changes.most_common(TOP_CHANGES)
            ],
        }


def candidates(
    scanned: Iterable[tuple[Upload, dict[str, Any] | None]],
    against: str,
    tally: Tally,
    candidate_sha: str | None = None,
) -> Iterable[tuple[Upload, dict[str, Any]]]:
    """The uploads whose current, finished result the candidate would replace.

    A result written by the candidate file itself (``model.sha`` equal to its hash) is
    skipped: comparing a file with itself says nothing.
    """
    for upload, existing in scanned:
        model = (existing or {}).get("model") or {}
        if existing is None or existing.get("status") != results.STATUS_DONE:
            tally.add("no finished result")
        elif model.get("id") != against:
            tally.add("another model's result")
        elif str(existing.get("generation")) != str(upload.generation):
            tally.add("re-uploaded since")
        elif candidate_sha is not None and model.get("sha") == candidate_sha:
            tally.add("the candidate's own result")
        else:
            tally.by_sha[model.get("sha")] += 1
            yield upload, existing


def compare_one(
    upload: Upload, existing: dict[str, Any], model: Any, *, top_k: int, limits: Any
) -> dict[str, Any]:
    """The candidate's answer for one stored upload, next to the current result's."""
    line: dict[str, Any] = {
        "path": upload.name,
        "current": top_label(existing.get("labels")),
        "currentSha": (existing.get("model") or {}).get("sha"),
    }
    try:
        outcome = classify_object(
            generation_blob(upload), upload.size, model, top_k=top_k, limits=limits
        )
    except MediaError as exc:
        return {**line, "outcome": "candidate error", "code": str(exc.code)}
    labels = outcome.labels
    return {
        **line,
        "outcome": verdict(existing.get("labels") or [], labels),
        "candidate": top_label(labels),
        "candidateScore": labels[0]["score"] if labels else None,
        "currentScore": (existing.get("labels") or [{}])[0].get("score"),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m media_classifier compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", required=True, help="the candidate .onnx file")
    parser.add_argument("--against", help="compare with results of this model id")
    parser.add_argument("--bucket", help="bucket name (default: the project's default bucket)")
    parser.add_argument("--under", help="only objects under this path (default: WATCH_PREFIX)")
    parser.add_argument("--limit", type=int, default=200, help="compare at most this many")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when the comparison ran (whatever it found)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not Path(args.model).is_file():
        parser.error(f"--model: no file {args.model}")
    try:
        model = Model.load(args.model)
    except ModelContractError as exc:
        parser.error(f"--model: not a model the functions can serve: {exc}")
    flow = config.flow()
    against = args.against or model.key
    bucket = clients.bucket(args.bucket)
    scanned = with_results(
        list_uploads(bucket, args.under or flow.prefix, None),
        clients.firestore_client(),
        flow.collection,
    )
    tally = Tally()
    for upload, existing in candidates(scanned, against, tally, model.sha):
        if tally.compared() + tally.counts["candidate error"] >= args.limit:
            break
        line = compare_one(upload, existing, model, top_k=flow.top_k, limits=flow.limits)
        tally.add(line["outcome"], line["current"], line.get("candidate"))
        if line["outcome"] != "same":
            print(json.dumps(line, ensure_ascii=False), flush=True)
    summary = {
        "model": {"id": model.key, "version": model.version, "sha": model.sha},
        "against": against,
    }
    print(json.dumps({**summary, **tally.summary()}, ensure_ascii=False), file=sys.stdout)
    return 0
