"""`make demo`: classify the shipped sample media through the local emulator stack.

Starts the emulators (tools/localstack.py), uploads the demo samples of
samples/images and samples/video (``DEMO_SAMPLES``) under ``uploads/demo-user/``,
waits for each result document in Firestore, prints a table (one line per sample,
with whether its top label is one the sample's subject allows), writes the full
documents to ``runs/demo-results.json`` (``--json`` prints them instead), and stops
everything it started. Exits 1 if any result is missing or names a sample wrongly,
so the demo doubles as a smoke test of the whole path. With ``MC_STACK_RUNNING=1``
it uses a stack that is already running (`make serve`) and leaves it running.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# gRPC logs an INFO line when the Firestore emulator goes away at shutdown: noise here.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from tools.localstack import (
    REPO_ROOT,
    StackError,
    check_stack,
    default_bucket,
    firestore_db,
    result_doc_id,
    running_stack,
)

SAMPLES = REPO_ROOT / "samples"
#: The samples the demo uploads, each with the top labels its subject allows. Why a list:
#: the default model knows the 1000 ImageNet classes only, and a first demo should show
#: it subjects it can name; samples/ also holds photos it can only approximate (a dahlia,
#: a cartoon rabbit), which the tests use. Sources and licences: samples/*/LICENSE.md.
DEMO_SAMPLES: dict[str, frozenset[str]] = {
    "images/chelsea-cat.png": frozenset({"Egyptian cat", "tabby", "tiger cat"}),
    "images/chelsea-cat-portrait.heic": frozenset({"Egyptian cat", "tabby", "tiger cat"}),
    "images/coffee.jpg": frozenset({"espresso", "cup", "coffee mug"}),
    "images/fire-engine.jpg": frozenset({"fire engine"}),
    "video/ladybug-zoom.mp4": frozenset({"ladybug"}),
}
DOCUMENTS_FILE = REPO_ROOT / "runs" / "demo-results.json"
OWNER = "demo-user"
RESULTS_COLLECTION = "mediaResults"
FINAL = frozenset({"done", "error"})


def demo_files(root: Path = SAMPLES) -> list[tuple[Path, str]]:
    """(file, content type) of each ``DEMO_SAMPLES`` entry, in its order."""
    return [(root / name, mimetypes.guess_type(name)[0] or "") for name in DEMO_SAMPLES]


def expected_labels(name: str) -> frozenset[str] | None:
    """The top labels the sample behind object ``name`` allows (None: not a demo sample)."""
    owner_prefix = f"uploads/{OWNER}/"
    return DEMO_SAMPLES.get(name.removeprefix(owner_prefix))


def object_name(path: Path) -> str:
    """``uploads/demo-user/<images|video>/<file>``."""
    return f"uploads/{OWNER}/{path.parent.name}/{path.name}"


def wait_for_results(
    db: Any,
    uploads: dict[str, int],
    timeout: float,
    check: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, Any] | None]:
    """Poll until every object's document is final for *this* upload's generation.

    Matching the generation matters when reusing a running stack: a document left
    by an earlier demo run must not count as this run's result. ``check`` (the
    stack's watchdog) raises when an emulator died: no point waiting out the timeout.
    """
    collection = db.collection(RESULTS_COLLECTION)
    results: dict[str, dict[str, Any] | None] = dict.fromkeys(uploads)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(v is None for v in results.values()):
        check()
        for name, generation in uploads.items():
            if results[name] is not None:
                continue
            snap = collection.document(result_doc_id(name)).get()
            doc = snap.to_dict() if snap.exists else None
            if doc and doc.get("status") in FINAL and str(doc.get("generation")) == str(generation):
                results[name] = doc
        time.sleep(0.3)
    return results


def _labels(doc: dict[str, Any], k: int = 3) -> str:
    labels = doc.get("labels") or []
    return ", ".join(f"{x['label']} {x['score']:.2f}" for x in labels[:k])


def named_as_expected(name: str, doc: dict[str, Any] | None) -> bool | None:
    """Whether the result's top label is one the sample allows (None: nothing to judge)."""
    allowed = expected_labels(name)
    if allowed is None or not doc or doc.get("status") != "done":
        return None
    labels = doc.get("labels") or []
    return bool(labels) and labels[0].get("label") in allowed


def format_table(results: dict[str, dict[str, Any] | None]) -> str:
    """A plain-text table: one line per sample (file, status, kind, top labels, ms, as expected)."""
    rows = [("object", "status", "kind", "top labels", "ms", "as expected")]
    for name, doc in results.items():
        if doc is None:
            rows.append((name, "MISSING", "-", "no result document", "-", "NO"))
            continue
        detail = _labels(doc)
        if doc.get("status") == "error":
            err = doc.get("error") or {}
            detail = f"{err.get('code')}: {err.get('message')}"
        total = (doc.get("timings") or {}).get("total")
        judged = named_as_expected(name, doc)
        rows.append(
            (
                name,
                str(doc.get("status")),
                str(doc.get("kind")),
                detail,
                f"{total:.0f}" if isinstance(total, int | float) else "-",
                "-" if judged is None else ("yes" if judged else "NO"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    widths[3] = min(widths[3], 70)
    lines = []
    for i, row in enumerate(rows):
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(row, widths, strict=True)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_documents(results: dict[str, dict[str, Any] | None], out: Path) -> None:
    """The full result documents, for reading after the table (git-ignored ``runs/``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(results, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


def run(timeout: float, *, print_json: bool = False, out: Path = DOCUMENTS_FILE) -> int:
    samples = demo_files()
    absent = [str(path.relative_to(REPO_ROOT)) for path, _ in samples if not path.is_file()]
    if absent:
        print(f"demo samples missing: {', '.join(absent)}", file=sys.stderr)
        return 1
    with running_stack(purpose="demo") as stack:
        bucket = default_bucket()
        db = firestore_db()
        uploads: dict[str, int] = {}
        for path, ctype in samples:
            name = object_name(path)
            blob = bucket.blob(name)
            blob.upload_from_filename(str(path), content_type=ctype)
            uploads[name] = int(blob.generation)
            print(f"uploaded {name} ({ctype}, {path.stat().st_size} bytes)", flush=True)
        print(f"waiting for {len(uploads)} results in {RESULTS_COLLECTION} ...", flush=True)
        results = wait_for_results(db, uploads, timeout, lambda: check_stack(stack))
    print()
    print(format_table(results))
    if print_json:
        print()
        print(json.dumps(results, indent=2, sort_keys=True, default=str, ensure_ascii=False))
    else:
        write_documents(results, out)
        shown = out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out
        print(f"\nfull result documents: {shown} (or run with --json to print them)")
    missing = [name for name, doc in results.items() if doc is None]
    if missing:
        print(f"\nmissing results ({len(missing)}): {', '.join(missing)}", file=sys.stderr)
        return 1
    errors = [n for n, d in results.items() if d and d.get("status") == "error"]
    print(f"\n{len(results) - len(errors)} done, {len(errors)} error, 0 missing")
    wrong = [n for n, d in results.items() if named_as_expected(n, d) is False]
    if wrong:
        print(
            f"named otherwise than expected ({len(wrong)}): {', '.join(wrong)}"
            " (expected labels: DEMO_SAMPLES in tools/demo.py)",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for all results"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the full result documents after the table"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DOCUMENTS_FILE,
        help="where the full result documents are written (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        return run(args.timeout, print_json=args.json, out=args.out.resolve())
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
