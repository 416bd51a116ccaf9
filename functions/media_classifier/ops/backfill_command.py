"""``python -m media_classifier backfill``: give every upload a current result, from a shell.

See :mod:`media_classifier.flows.backfill` for what is redone and why; this module is the
command line around it (arguments, credentials, Ctrl-C, the progress file).
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from media_classifier import config, logs
from media_classifier.errors import ErrorCode
from media_classifier.flows.backfill import (
    READ_BATCH,
    BackfillOptions,
    Scope,
    StopFlag,
    list_uploads,
    load_state,
    run,
)
from media_classifier.inference.model import default_registry
from media_classifier.inference.pipeline import model_ref
from media_classifier.store import clients

DESCRIPTION = "Give every object under the watched prefix a current result, safely."


def _error_codes(text: str) -> frozenset[str]:
    """``--errors``' value: known error codes only (a typo would silently redo nothing)."""
    codes = frozenset(code.strip().upper() for code in text.split(",") if code.strip())
    unknown = sorted(codes - {str(code) for code in ErrorCode})
    if unknown:
        known = ", ".join(str(code) for code in ErrorCode)
        raise argparse.ArgumentTypeError(f"unknown code(s) {', '.join(unknown)}; known: {known}")
    return codes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m media_classifier backfill",
        description=DESCRIPTION,
    )
    parser.add_argument("--bucket", help="bucket name (default: the project's default bucket)")
    parser.add_argument(
        "--under", help="only objects under this path (default: the WATCH_PREFIX param)"
    )
    parser.add_argument("--limit", type=int, help="classify at most this many objects")
    parser.add_argument("--rate", type=float, default=2.0, help="objects per second (0: any)")
    parser.add_argument("--state", type=Path, help="progress file: resume from it, keep it")
    parser.add_argument("--dry-run", action="store_true", help="only count what would be done")
    parser.add_argument("--everything", action="store_true", help="redo every result")
    parser.add_argument(
        "--errors",
        type=_error_codes,
        default=frozenset(),
        metavar="CODE[,CODE]",
        help="also redo errors with these codes (e.g. TOO_LARGE after raising a limit)",
    )
    parser.add_argument("--progress-every", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--read-batch", type=int, default=READ_BATCH, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when the run ended normally (complete or stopped by ``--limit``)."""
    args = build_parser().parse_args(argv)
    flow = config.flow()
    prefix = flow.prefix
    under = args.under or prefix
    if not under.startswith(prefix):
        build_parser().error(f"--under must be inside the watched prefix {prefix!r}")
    bucket = clients.bucket(args.bucket)
    scope = Scope(bucket=bucket.name, under=under)
    after = load_state(args.state, scope)
    settings = BackfillOptions(
        flow=flow,
        limit=args.limit,
        rate=args.rate,
        everything=args.everything,
        errors=args.errors,
        dry_run=args.dry_run,
        progress_every=max(1, args.progress_every),
        read_batch=max(1, args.read_batch),
    )
    registry = default_registry()
    stop = StopFlag()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    logs.backfill_started(scope.bucket, under, after, args.dry_run)
    run(
        list_uploads(bucket, under, after),
        db=clients.firestore_client(),
        settings=settings,
        model_ref=lambda model_id: model_ref(registry.get(model_id)),
        scope=scope,
        state=args.state,
        stop=stop,
    )
    return 0
