"""Command line: ``python -m media_classifier FILE...`` (run from ``functions/``).

Operator commands: ``python -m media_classifier backfill ...``, ``recover``, ``refresh ...``
and ``compare --model FILE`` (the modules named in :data:`COMMANDS`).

Prints one JSON object per file with the same fields as the result document, using
the same pipeline, models and limits as the deployed functions: the quickest way to
see what an upload will produce, and to debug a file a user reports.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

from media_classifier import config
from media_classifier.errors import ErrorCode, MediaError
from media_classifier.inference.model import default_registry
from media_classifier.inference.pipeline import classify_file

#: ``python -m media_classifier COMMAND ...``: the module whose ``main(argv)`` runs it.
COMMANDS = {
    "backfill": "backfill_command",
    "recover": "recover_command",
    "compare": "compare",
    "refresh": "refresh_command",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m media_classifier",
        description="Classify images and videos exactly as the Cloud Functions do.",
    )
    parser.add_argument("files", nargs="*", help="image or video files")
    parser.add_argument("--model", help="model id (default: the DEFAULT_MODEL param)")
    parser.add_argument("--top-k", type=int, help="labels per result (default: TOP_K param)")
    parser.add_argument("--frames", action="store_true", help="include per-frame video detail")
    parser.add_argument("--models", action="store_true", help="list the served models and exit")
    parser.add_argument("--indent", type=int, default=None, help="pretty-print JSON")
    return parser


def classify_path(path: str, model_id: str, top_k: int, with_frames: bool) -> dict[str, Any]:
    """One file's result, in the result document's shape (never raises for bad media)."""
    base: dict[str, Any] = {"path": path, "size": None, "status": "error"}
    try:
        base["size"] = os.path.getsize(path)
        try:
            model = default_registry().get(model_id)
        except KeyError as exc:
            raise MediaError(ErrorCode.UNKNOWN_MODEL, f"no model {model_id!r}") from exc
        outcome = classify_file(path, model, top_k=top_k, limits=config.limits())
    except MediaError as exc:
        return {**base, "error": exc.as_dict(), "labels": []}
    except OSError as exc:
        return {**base, "error": {"code": "NOT_FOUND", "message": str(exc)}, "labels": []}
    result = {**base, **outcome.fields(), "status": "done", "error": None}
    if with_frames:
        result["frames"] = outcome.frames
    return result


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when every file was classified, 1 when any ended in an error."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in COMMANDS:
        module = importlib.import_module(f".{COMMANDS[argv[0]]}", __package__)
        return module.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.models:
        for model in default_registry().all():
            print(
                json.dumps(
                    {k: v for k, v in model.describe().items() if k != "labels"}
                    | {"classes": len(model.labels)},
                    indent=args.indent,
                )
            )
        return 0
    if not args.files:
        _parser().print_usage(sys.stderr)
        return 2
    model_id = args.model or config.DEFAULT_MODEL.value
    top_k = args.top_k or config.TOP_K.value
    failures = 0
    for path in args.files:
        result = classify_path(path, model_id, top_k, args.frames)
        failures += result["status"] != "done"
        print(json.dumps(result, indent=args.indent, ensure_ascii=False), flush=True)
    return 1 if failures else 0
