"""``evaluate``: held-out test metrics through the functions' own serving code; writes the card.

Each test image enters as encoded bytes (Fashion-MNIST's 28x28 arrays are encoded as PNG) and
goes through ``media_classifier.media.images.prepare_image`` and
``media_classifier.inference.model.Model`` exactly as an upload would, so the numbers are those
of the deployed path, decoder and resize included. Reported: top-1, top-5, per-class
precision/recall, confusion matrix (PNG), training curves (PNG), CPU latency per image, file
size, and the goals met or missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model_build import card, cpu_check, plots
from model_build import data as data_mod
from model_build.latency import compare_latency
from model_build.serving import REPO_ROOT, png_bytes
from model_build.serving import prepare_image as serving_prepare


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``evaluate``."""
    p.add_argument("--model", type=Path, required=True, help="the ONNX file to evaluate and card")
    p.add_argument("--compare", type=Path, default=None, help="its twin (e.g. fp32) to compare")
    p.add_argument("--run", type=Path, default=None, help="training run folder (curves, recipe)")
    p.add_argument(
        "--export-report",
        type=Path,
        default=None,
        help="export.json (default: found beside --compare/--model or in <run>/export)",
    )
    p.add_argument("--data", default=None, help="dataset (default: the run's, else fashion-mnist)")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N test images only")
    p.add_argument(
        "--notes",
        type=Path,
        default=None,
        help="markdown file in the repository, shown in the card as 'What was tried'",
    )
    p.add_argument(
        "--carry-over",
        type=Path,
        default=None,
        help="an earlier eval.json of the file this one was made from (by narrow-inputs or"
        " dyadic-finetune): its twin, recipe and export report are kept, and the card says"
        " what changed",
    )
    p.add_argument(
        "--finetune",
        type=Path,
        default=None,
        help="the report dyadic-finetune wrote beside the file (<stem>.finetune.json): kept in"
        " the eval.json, and the card says what the fine-tune did",
    )
    p.add_argument("--goal-top1", type=float, default=0.95)
    p.add_argument("--goal-gap", type=float, default=0.003, help="max top-1 loss vs --compare")
    p.add_argument("--goal-mb", type=float, default=3.0, help="max file size, MB")
    p.add_argument("--latency-images", type=int, default=50, help="inputs timed per round")


def test_inputs(ds: data_mod.Dataset, limit: int) -> tuple[list[bytes], np.ndarray]:
    """Test images as upload bytes (IDX arrays -> PNG; files as they are) and their labels."""
    if ds.test is None or not len(ds.test):
        raise SystemExit(f"{ds.root} has no test split")
    split = ds.test
    if limit:
        split = split.subset(np.arange(min(limit, len(split))))
    if split.arrays is not None:
        blobs = [png_bytes(a) for a in split.arrays]
    else:
        blobs = [f.read_bytes() for f in split.files or []]
    return blobs, split.labels


def measure(path: Path, blobs: Sequence[bytes], labels: np.ndarray, n_latency: int) -> dict:
    """Run one model file over the test bytes through the serving code; metrics + latency."""
    from media_classifier.inference.model import Model

    model = Model.load(path)
    t0 = time.perf_counter()
    x = np.stack([serving_prepare(b, model.input_size, model.resize_policy) for b in blobs])
    prep_s = time.perf_counter() - t0
    probs = np.concatenate([model.predict(x[i : i + 256]) for i in range(0, len(x), 256)])
    n_cls = len(model.labels)
    pred = probs.argmax(1)
    top5 = np.argsort(-probs, axis=1)[:, : min(5, n_cls)]
    cm = np.zeros((n_cls, n_cls), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    tp = np.diag(cm).astype(float)
    precision = tp / cm.sum(0).clip(min=1)
    recall = tp / cm.sum(1).clip(min=1)
    prep_one = []
    for b in blobs[: min(len(blobs), n_latency)]:
        t = time.perf_counter()
        serving_prepare(b, model.input_size, model.resize_policy)
        prep_one.append((time.perf_counter() - t) * 1000)
    return {
        "file": str(path),
        "bytes": path.stat().st_size,
        "name": model.name,
        "version": model.version,
        "input_size": list(model.input_size),
        "resize": model.resize_policy,
        "labels": list(model.labels),
        "images": len(labels),
        "top1": float((pred == labels).mean()),
        "top5": float((top5 == labels[:, None]).any(1).mean()),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "confusion": cm.tolist(),
        "prob_sum_max_dev": float(np.abs(probs.sum(1) - 1).max()),
        "prepare_ms_median": statistics.median(prep_one),
        "prepare_total_s": prep_s,
    }


def latencies(paths: Sequence[Path], blobs: Sequence[bytes], n: int) -> list[dict]:
    """Batch-1 latency per file at 1 thread and at the functions' default thread count."""
    from media_classifier.inference.model import Model

    inputs = []
    for p in paths:
        m = Model.load(p, threads=1)
        inputs.append(
            np.stack([serving_prepare(b, m.input_size, m.resize_policy) for b in blobs[:n]])
        )
    one = compare_latency(paths, inputs, threads=1)
    default = compare_latency(paths, inputs, threads=None)
    return [
        {"latency_ms_1thread": a, "latency_ms_default_threads": b}
        for a, b in zip(one, default, strict=True)
    ]


def run(args: argparse.Namespace) -> int:
    """Evaluate, draw the figures, write ``<model>.eval.json`` and the model card."""
    cfg = None
    if args.run and (args.run / "config.json").is_file():
        cfg = json.loads((args.run / "config.json").read_text())
    earlier = json.loads(args.carry_over.read_text()) if args.carry_over else None
    if earlier and cfg is None:
        cfg = earlier.get("config")
    spec = args.data or (cfg["data"] if cfg else "fashion-mnist")
    ds = data_mod.open_dataset(spec)
    blobs, labels = test_inputs(ds, args.limit)
    main = measure(args.model, blobs, labels, args.latency_images)
    twin = measure(args.compare, blobs, labels, args.latency_images) if args.compare else None
    if twin is None and earlier:
        twin = earlier.get("compare")
    paths = [args.model] + ([args.compare] if args.compare else [])
    timed = [main] + ([twin] if args.compare else [])
    for res, lat in zip(timed, latencies(paths, blobs, args.latency_images), strict=True):
        assert res is not None
        res.update(lat)
    if tuple(main["labels"]) != tuple(ds.classes):
        print(f"warning: model labels {main['labels']} differ from dataset's {ds.classes}")

    assets = args.model.parent
    stem = card.sibling(args.model, "").name
    plots.confusion_png(
        np.array(main["confusion"]),
        main["labels"],
        assets / f"{stem}.confusion.png",
        f"{main['name']} {main['version']}: test confusion",
    )
    if args.run and (args.run / "metrics.jsonl").is_file():
        plots.curves_png(args.run / "metrics.jsonl", assets / f"{stem}.curves.png")
    result = {
        "model": main,
        "compare": twin,
        "data": str(ds.root),
        "config": cfg,
        "export": _find_export_report(args) or (earlier or {}).get("export"),
        "goals": {"top1": args.goal_top1, "gap": args.goal_gap, "mb": args.goal_mb},
        "notes": _notes_path(args.notes) or (earlier or {}).get("notes"),
        "narrowed": _narrowed(args.model, earlier),
        "finetune": _finetune(args.finetune, earlier),
        "carried_over_from": (earlier or {}).get("model", {}).get("version"),
    }
    # The CPU this ran on, and its optimized execution next to the reference execution.
    size = (main["input_size"][0], main["input_size"][1])
    x = np.stack([serving_prepare(b, size, main["resize"]) for b in blobs])
    row = cpu_check.measure(args.model, x, labels)
    result["cpu_check"] = row
    card.sibling(args.model, ".eval.json").write_text(json.dumps(result, indent=1, default=str))
    cpu_check.record(args.model, row)
    card_path = card.write(args.model)
    print(
        f"top-1 {main['top1']:.4f} top-5 {main['top5']:.4f} ({main['images']} images)"
        + (f"; compare top-1 {twin['top1']:.4f}" if twin else "")
        + f"; card {card_path}"
    )
    return 0


def _narrowed(model: Path, earlier: dict | None) -> dict | None:
    """What ``narrow-inputs`` changed, against the file the earlier evaluation measured; or,
    when that file was narrowed already (a later step, e.g. ``dyadic-finetune``, made this
    one), the earlier evaluation's record of it: ``version`` is the file narrowing made."""
    import onnx

    from model_build.narrow import NARROW_KEY, NARROW_VALUE, dense_input_quantizers

    graph = onnx.load(str(model))
    if {p.key: p.value for p in graph.metadata_props}.get(NARROW_KEY) != NARROW_VALUE:
        return None
    before = (earlier or {}).get("model") or {}
    if earlier and earlier.get("narrowed"):
        return {"version": before.get("version")} | earlier["narrowed"]
    return {
        "version": next(p.value for p in graph.metadata_props if p.key == "version"),
        "tensors": len(dense_input_quantizers(graph)),
        "from_version": before.get("version"),
        "from_top1": before.get("top1"),
        "twin_measured_with": before.get("version") if earlier and earlier.get("compare") else None,
    }


def _finetune(path: Path | None, earlier: dict | None) -> dict | None:
    """``dyadic-finetune``'s report, with the test top-1 of the file it started from where the
    earlier evaluation measured that very file (same version)."""
    if path is None:
        return None
    done = json.loads(path.read_text())
    before = (earlier or {}).get("model") or {}
    same = before.get("version") == done["from"]["version"]
    return done | {"from_top1": before.get("top1") if same else None}


def _notes_path(notes: Path | None) -> str | None:
    """The notes file as the card names it: relative to the repository, which must hold it."""
    if notes is None:
        return None
    resolved = notes.resolve()
    if not resolved.is_file() or not resolved.is_relative_to(REPO_ROOT):
        raise SystemExit(f"--notes {notes}: not a file in the repository")
    return resolved.relative_to(REPO_ROOT).as_posix()


def _find_export_report(args: argparse.Namespace) -> dict | None:
    cands = [args.export_report] if args.export_report else []
    cands += [p.parent / "export.json" for p in (args.compare, args.model) if p]
    if args.run:
        cands.append(args.run / "export" / "export.json")
    for c in cands:
        if c and c.is_file():
            return json.loads(c.read_text())
    return None
