"""``python -m media_classifier recover``: one recovery sweep now, or a dry run listing it.

The scheduled function ``recover_interrupted`` runs the same sweep every 10 minutes; see
:mod:`media_classifier.flows.recovery`.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from media_classifier import config
from media_classifier.flows.recovery import RETRY_BUDGET_S, SCAN, RecoveryOptions, plan, sweep
from media_classifier.store import clients, results
from media_classifier.store.results import attempts_of

DESCRIPTION = "Recovery: an upload whose worker died mid-way still ends in done or error."


def main(argv: list[str] | None = None) -> int:
    """``python -m media_classifier recover``: one run now; prints the summary as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m media_classifier recover",
        description=DESCRIPTION,
    )
    parser.add_argument(
        "--budget", type=float, default=RETRY_BUDGET_S, help="start no retry after these seconds"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the stale claims and what a run would do"
    )
    args = parser.parse_args(argv)
    settings = RecoveryOptions(config.flow(), budget_s=args.budget)
    db = clients.firestore_client()
    if args.dry_run:
        stale = results.stale_claims(db, settings.flow.collection, datetime.now(UTC), SCAN)
        for snap in stale:
            existing = snap.to_dict() or {}
            step = plan(existing, settings.flow.prefix)[1]
            line = {"doc": snap.id, "path": existing.get("path"), "step": step}
            print(json.dumps({**line, "attempts": attempts_of(existing)}), flush=True)
        summary: dict[str, Any] = {"stale": len(stale), "dryRun": True}
    else:
        summary = sweep(db, settings)
    print(json.dumps(summary), file=sys.stdout, flush=True)
    return 0
