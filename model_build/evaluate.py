"""``evaluate``: held-out test metrics through the functions' own serving code; writes the card.

Each test image enters as encoded bytes (Fashion-MNIST's 28x28 arrays are encoded as PNG) and
goes through ``media_classifier.images.prepare_image`` and ``media_classifier.model.Model``
exactly as an upload would, so the numbers are those of the deployed path, decoder and resize
included. Reported: top-1, top-5, per-class precision/recall, confusion matrix (PNG), training
curves (PNG), CPU latency per image, file size, and the goals met or missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model_build import cpu_check, plots
from model_build import data as data_mod
from model_build.card import Card, mb, pct, table, write_card
from model_build.latency import compare_latency
from model_build.serving import add_functions_to_path, png_bytes
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
    p.add_argument("--card", type=Path, default=None, help="card path (default: <model>.md)")
    p.add_argument("--notes", type=Path, default=None, help="markdown appended as 'What was tried'")
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
    add_functions_to_path()
    from media_classifier.model import Model

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
    add_functions_to_path()
    from media_classifier.model import Model

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
    spec = args.data or (cfg["data"] if cfg else "fashion-mnist")
    ds = data_mod.open_dataset(spec)
    blobs, labels = test_inputs(ds, args.limit)
    main = measure(args.model, blobs, labels, args.latency_images)
    twin = measure(args.compare, blobs, labels, args.latency_images) if args.compare else None
    paths = [args.model] + ([args.compare] if args.compare else [])
    for res, lat in zip([main, twin], latencies(paths, blobs, args.latency_images), strict=False):
        assert res is not None
        res.update(lat)
    if tuple(main["labels"]) != tuple(ds.classes):
        print(f"warning: model labels {main['labels']} differ from dataset's {ds.classes}")

    card_path = args.card or args.model.with_suffix("").with_suffix(".md")
    stem = card_path.with_suffix("").name
    assets = card_path.parent
    cm_png = plots.confusion_png(
        np.array(main["confusion"]),
        main["labels"],
        assets / f"{stem}.confusion.png",
        f"{main['name']} {main['version']}: test confusion",
    )
    curves = None
    if args.run and (args.run / "metrics.jsonl").is_file():
        curves = plots.curves_png(args.run / "metrics.jsonl", assets / f"{stem}.curves.png")
    export_report = _find_export_report(args)
    result = {
        "model": main,
        "compare": twin,
        "data": str(ds.root),
        "config": cfg,
        "export": export_report,
    }
    card_path.with_suffix(".eval.json").write_text(json.dumps(result, indent=1, default=str))
    card = build_card(args, result, cm_png, curves)
    write_card(card, card_path)
    # The CPU this ran on, and its optimized execution next to the reference execution.
    size = (main["input_size"][0], main["input_size"][1])
    x = np.stack([serving_prepare(b, size, main["resize"]) for b in blobs])
    row = cpu_check.measure(args.model, x, labels)
    result["cpu_check"] = row
    card_path.with_suffix(".eval.json").write_text(json.dumps(result, indent=1, default=str))
    rows = json.loads(cpu_check.record(args.model, row).read_text())
    cpu_check.update_card(card_path, cpu_check.render(rows))
    print(
        f"top-1 {main['top1']:.4f} top-5 {main['top5']:.4f} ({main['images']} images)"
        + (f"; compare top-1 {twin['top1']:.4f}" if twin else "")
        + f"; card {card_path}"
    )
    return 0


def _find_export_report(args: argparse.Namespace) -> dict | None:
    cands = [args.export_report] if args.export_report else []
    cands += [p.parent / "export.json" for p in (args.compare, args.model) if p]
    if args.run:
        cands.append(args.run / "export" / "export.json")
    for c in cands:
        if c and c.is_file():
            return json.loads(c.read_text())
    return None


def _command(cfg: dict) -> str:
    """The ``train`` command line that reproduces a run's config."""
    skip = {"extra", "out", "device", "weights", "workers"}
    parts = ["python -m model_build train"]
    for k, v in cfg.items():
        if k in skip or v is None:
            continue
        parts.append(f"--{k.replace('_', '-')} {v}")
    return " \\\n    ".join(parts)


def build_card(args: argparse.Namespace, r: dict, cm_png: Path, curves: Path | None) -> Card:
    """The model card: numbers first, then data, recipe, export checks, limits."""
    m, t, cfg, ex = r["model"], r["compare"], r["config"], r["export"]
    gap = (t["top1"] - m["top1"]) if t else None
    goals = [
        (
            "test top-1",
            f">= {pct(args.goal_top1, 1)}",
            pct(m["top1"]),
            "met" if m["top1"] >= args.goal_top1 else "NOT met",
        ),
        (
            "file size",
            f"<= {args.goal_mb:.1f} MB",
            mb(m["bytes"]),
            "met" if m["bytes"] <= args.goal_mb * 1e6 else "NOT met",
        ),
    ]
    if gap is not None:
        goals.insert(
            1,
            (
                "top-1 loss vs twin",
                f"<= {100 * args.goal_gap:.1f} points",
                f"{100 * gap:+.2f} points",
                "met" if gap <= args.goal_gap else "NOT met",
            ),
        )
    h, w = m["input_size"]
    card = Card(
        title=f"{m['name']} {m['version']}",
        summary=(
            f"Image classifier for {len(m['labels'])} classes, measured on "
            f"{m['images']:,} held-out test images through the functions' serving code "
            "(`media_classifier.images.prepare_image` + `media_classifier.model.Model`)."
        ),
        facts=[
            ("file", f"`{Path(m['file']).name}`, {mb(m['bytes'])}"),
            ("input", f"uint8 RGB NHWC [N, {h}, {w}, 3]; resize policy `{m['resize']}`"),
            ("output", f"probabilities [N, {len(m['labels'])}] (softmax in the graph)"),
            ("labels", ", ".join(m["labels"])),
            ("test top-1 / top-5", f"{pct(m['top1'])} / {pct(m['top5'])}"),
        ],
    )
    card.add("Goals", table(("goal", "target", "result", ""), goals))
    rows = [_row(Path(m["file"]).name, m)] + ([_row(Path(t["file"]).name, t)] if t else [])
    card.add(
        "Results (test set, serving path, this build machine's CPU)",
        table(
            (
                "file",
                "top-1",
                "top-5",
                "size",
                "predict 1 thread",
                "predict default threads",
                "decode+resize",
            ),
            rows,
        )
        + "\n\nLatency: median of batch-1 `Model.predict` calls on real test inputs after "
        "warm-up, the files timed in alternating rounds (the build machine is shared, so "
        "compare rows rather than trust absolute numbers); default threads = the functions' "
        "setting (allocated CPUs). decode+resize is `prepare_image` per image.",
    )
    per_class = [
        (name, f"{p:.3f}", f"{rc:.3f}", sum(row))
        for name, p, rc, row in zip(
            m["labels"], m["precision"], m["recall"], m["confusion"], strict=True
        )
    ]
    card.add(
        "Per class (this file)", table(("class", "precision", "recall", "test images"), per_class)
    )
    figs = f"![confusion matrix]({cm_png.name})"
    if curves:
        figs += f"\n\n![training curves]({curves.name})"
    card.add("Figures", figs)
    if cfg:
        extra = cfg.get("extra", {})
        card.add(
            "Data",
            f"Training data {_source(cfg['data'], m['labels'])}: "
            f"{extra.get('train_images', '?')} "
            f"training images, {extra.get('val_images', '?')} validation images carved "
            f"from the training set (stratified, seed {cfg['seed']}); the test split was "
            "used only here. Each image is converted to RGB and resized by the serving "
            f"code's `fit_to_model` to {cfg['size']}x{cfg['size']} (`{cfg['policy']}`).",
        )
        card.add(
            "Recipe",
            f"Backbone `{cfg['backbone']}` (ImageNet weights). "
            f"{cfg['head_epochs']} epochs training a new head on the frozen backbone "
            f"(lr {cfg['head_lr']}), then up to {cfg['epochs']} epochs fine-tuning "
            f"everything (peak lr {cfg['lr']}, {cfg['warmup_epochs']} warm-up epochs, "
            f"cosine to {cfg['min_lr_ratio']}x), {cfg['optimizer']}, weight decay "
            f"{cfg['weight_decay']}, batch {cfg['batch_size']}, label smoothing "
            f"{cfg['label_smoothing']}, augmentation `{cfg['augment']}`, EMA {cfg['ema']}, "
            f"early stopping patience {cfg['patience']} on validation top-1.\n\n"
            f"```\n{_command(cfg)}\n```",
        )
    if ex:
        cands = ", ".join(
            f"{k}: val top-1 {v['val_top1']:.4f}"
            for k, v in ex.get("calibration_candidates", {}).items()
        )
        card.add(
            "Export and quantization",
            "\n".join(
                [
                    f"- fp32 ONNX vs PyTorch on {ex['check_images']} validation images: max abs "
                    f"difference {ex['parity_max_abs_diff_fp32_vs_torch']:.2e}, top-1 agreement "
                    f"{pct(ex['parity_top1_agreement_fp32_vs_torch'])}.",
                    f"- int8: static QDQ, per-channel int8 weights, uint8 activations, calibrated "
                    f"on "
                    f"{ex['calibration_images']} training images; calibration method "
                    f"`{ex['calibration']}` chosen on validation accuracy ({cands}).",
                    f"- layers kept in float: {', '.join(ex['float_layers']) or 'none'}.",
                    f"- command: `python -m model_build export --checkpoint {ex['checkpoint']} "
                    f"--name {ex['name']} --version {ex['version']}`",
                ]
            ),
        )
    card.add(
        "Evaluation command",
        f"```\npython -m model_build evaluate --model {args.model}"
        + (f" --compare {args.compare}" if args.compare else "")
        + (f" --run {args.run}" if args.run else "")
        + "\n```",
    )
    if args.notes and args.notes.is_file():
        card.add("What was tried", args.notes.read_text())
    return card


def _source(spec: str, labels: Sequence[str]) -> str:
    """Where the data came from, in words (the run may have read a carried copy)."""
    if tuple(labels) == data_mod.FASHION_MNIST_LABELS:
        return (
            "Fashion-MNIST (Zalando Research, MIT licence; Debian package "
            f"`dataset-fashion-mnist` via `make fashion-data`; this run read `{spec}`)"
        )
    return f"`{spec}`"


def _row(name: str, m: dict) -> tuple:
    return (
        name,
        pct(m["top1"]),
        pct(m["top5"]),
        mb(m["bytes"]),
        f"{m['latency_ms_1thread']:.2f} ms",
        f"{m['latency_ms_default_threads']:.2f} ms",
        f"{m['prepare_ms_median']:.2f} ms",
    )
