"""``python -m media_classifier refresh {start,status,cancel,resume}``: a refresh from a shell.

The same operations as the admin-only callable ``refresh_admin``, for operators with the
project's credentials (see docs/operations-refresh.md).
"""

from __future__ import annotations

import argparse
import json
import sys

from media_classifier import config
from media_classifier.flows.refresh import RunExpired, cancel, resume, start
from media_classifier.store import clients
from media_classifier.store.tasks import AdminQueue

#: The first paragraph of the refresh module's description, for ``--help``.
DESCRIPTION = "Refresh every result with the current model, fanned out over Cloud Tasks."


def main(argv: list[str] | None = None) -> int:
    """``python -m media_classifier refresh {start,status,cancel,resume}``."""
    parser = argparse.ArgumentParser(
        prog="python -m media_classifier refresh", description=DESCRIPTION
    )
    sub = parser.add_subparsers(dest="action", required=True)
    begin = sub.add_parser("start", help="start a run: list the bucket, enqueue batches")
    begin.add_argument("--bucket", help="bucket name (default: the project's default bucket)")
    begin.add_argument("--under", help="only objects under this path (default: WATCH_PREFIX)")
    begin.add_argument("--everything", action="store_true", help="redo every result")
    begin.add_argument("--errors", default="", help="also redo errors with these codes")
    begin.add_argument("--fail-after", type=int, help=argparse.SUPPRESS)  # emulator tests
    for name in ("status", "cancel", "resume"):
        sub.add_parser(name, help=f"{name} a run").add_argument("run")
    args = parser.parse_args(argv)
    settings = config.refresh_options()
    db = clients.firestore_client()
    if args.action == "start":
        bucket = clients.bucket(args.bucket)
        errors = frozenset(c.strip().upper() for c in args.errors.split(",") if c.strip())
        started = start(
            db,
            AdminQueue(),
            settings,
            bucket=bucket.name,
            under=args.under or settings.flow.prefix,
            everything=args.everything,
            errors=errors,
            fail_after=args.fail_after,
        )
        print(json.dumps({"run": started}))
    elif args.action == "cancel":
        print(json.dumps({"run": args.run, "cancelled": cancel(db, settings, args.run)}))
    elif args.action == "resume":
        try:
            enqueued = resume(db, AdminQueue(), settings, args.run)
        except RunExpired:
            print(f"run {args.run}: its unfinished batches have expired; start a new run")
            return 1
        print(json.dumps({"run": args.run, "enqueued": enqueued}))
    else:
        snap = db.collection(settings.collection).document(args.run).get()
        print(json.dumps(snap.to_dict() if snap.exists else None, default=str, ensure_ascii=False))
    sys.stdout.flush()
    return 0
