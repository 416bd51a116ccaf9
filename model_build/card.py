"""Model cards: ``<stem>.md`` beside each shipped model, rendered from its data files.

``card`` re-renders a card from what sits beside the model, without retraining or re-exporting:

    python -m model_build card functions/models/imagenet_mobilenet_v2.int8.onnx

Why one template (``templates/model_card.md.j2``) and data files: every number in a card comes
from the command that measured it (``<stem>.eval.json`` from ``evaluate`` or
``export-pretrained``, ``<stem>.cpus.json`` from ``cpu-check``, the ONNX file's own metadata),
so a card is never edited by hand and the words around the numbers are written once, for every
model. Sections that apply to one kind of model (training curves for a model trained here, the
distillation of the pretrained export) are conditional in the template. Paths of the machine
that built a model never reach a card: only file names, and commands that run from the
repository root. Rendering is strict (``StrictUndefined``): a variable the template uses and
the data lack is an error, not an empty cell.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import jinja2

from model_build import cpu
from model_build.cpu_check import NOISE_BOUND, noise_bound
from model_build.data import FASHION_MNIST_LABELS
from model_build.onnx_export import read_metadata
from model_build.serving import REPO_ROOT
from model_build.stamp import check as stamped_sha

TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md.j2"
#: evaluate's default goals, for an eval.json written before goals were recorded.
DEFAULT_GOALS = {"top1": 0.95, "gap": 0.003, "mb": 3.0}


def pct(x: float, digits: int = 2) -> str:
    """0.9512 -> '95.12 %'."""
    return f"{100.0 * x:.{digits}f} %"


def mb(n_bytes: int) -> str:
    """Bytes -> 'x.xx MB' (10^6, as file sizes are usually quoted)."""
    return f"{n_bytes / 1e6:.2f} MB"


def cell(value: object) -> str:
    """One table cell: pipes escaped, newlines flattened (a table row must stay on one line)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def candidate(trial: dict[str, Any]) -> str:
    """A quantization candidate in words: the calibration method, or a student's recipe."""
    if trial["method"] != "distilled":
        return str(trial["method"])
    s = trial["student"]
    parts = [f"lr {s['lr']}", f"mix {s['mix']}", f"train {s.get('train', 'all')}"]
    if s.get("scale_lr"):
        parts.append(f"activation scales learned (lr {s['scale_lr']})")
    if s.get("paste"):
        parts.append(f"extra photos (paste {s['paste']})")
    if s.get("ema"):
        parts.append(f"weight average {s['ema']}")
    return f"distilled ({', '.join(parts)})"


def environment() -> jinja2.Environment:
    """The template's environment: strict, markdown-safe filters, no HTML escaping."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters |= {
        "pct": pct,
        "pct_or_blank": lambda x, digits=2: "" if x is None else pct(x, digits),
        "mb": mb,
        "cell": cell,
        "basename": lambda p: Path(str(p)).name,
        "candidate": candidate,
    }
    env.globals["zip"] = zip
    return env


def sibling(model: Path, suffix: str) -> Path:
    """``<stem><suffix>`` beside the model (stem: the file name up to its first dot)."""
    return model.with_name(model.name.split(".", 1)[0] + suffix)


def cpu_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """cpus.json rows as the table shows them (the CPU in words, absent numbers as None)."""
    return [
        {
            "cpu": cpu.summary(r["cpu"]) + (f" ({r['note']})" if r.get("note") else ""),
            "kernels": r["cpu"]["int8_kernels"],
            "path": r["cpu"]["serving_int8_path"],
            "images": r["images"],
            "top1_optimized": r.get("top1_optimized"),
            "top1_reference": r.get("top1_reference"),
            "top1_agreement": r["top1_agreement"],
            "decisive_agreement": r["decisive_agreement"],
            "decisive_images": r["decisive_images"],
            "max_abs_diff": r["max_abs_diff"],
            "identical": r.get("identical_images"),
            "latency_ms": r.get("latency_ms_1thread"),
        }
        for r in rows
    ]


def cpu_table(rows: list[dict[str, Any]]) -> str:
    """The per-CPU table alone (``cpu-check`` prints it), from the template's macro."""
    macro = environment().get_template(TEMPLATE.name).module.cpu_table  # type: ignore[attr-defined]
    bound = rows[0].get("noise_bound", NOISE_BOUND) if rows else NOISE_BOUND
    return str(macro(cpu_rows(rows), bound))


def _model_facts(model: Path) -> dict[str, Any]:
    meta = read_metadata(model)
    return {
        "id": model.name.split(".", 1)[0],
        "name": meta.name,
        "version": meta.version,
        "sha": stamped_sha(model) or "not stamped: run `python -m model_build stamp`",
        "file": model.name,
        "bytes": model.stat().st_size,
        "labels": list(meta.labels),
        "input_size": list(meta.input_size),
        "resize": meta.resize,
    }


def _run_dir(model: Path) -> str:
    """The run folder the card's commands name: repository-relative, never a build path."""
    return f"runs/{model.name.split('.', 1)[0]}"


def _train_command(cfg: dict[str, Any], fashion: bool, run: str) -> str:
    """The ``train`` command line that reproduces a run's config, from the repository root."""
    skip = {"extra", "out", "device", "weights", "workers", "data"}
    data = "fashion-mnist" if fashion else "DATA"
    parts = ["python -m model_build train", f"--data {data}", f"--out {run}"]
    parts += [
        f"--{k.replace('_', '-')} {v}" for k, v in cfg.items() if k not in skip and v is not None
    ]
    return " \\\n    ".join(parts)


def _trained(model: Path, report: dict[str, Any]) -> dict[str, Any]:
    main, twin, cfg = report["model"], report.get("compare"), report.get("config")
    fashion = tuple(main["labels"]) == FASHION_MNIST_LABELS
    run = _run_dir(model)
    pictures = (("confusion matrix", ".confusion.png"), ("training curves", ".curves.png"))
    figures = [
        (alt, sibling(model, suffix).name)
        for alt, suffix in pictures
        if sibling(model, suffix).is_file()
    ]
    evaluate = f"python -m model_build evaluate --model functions/models/{model.name}"
    earlier = report.get("carried_over_from")
    if earlier:
        # The twin, recipe and export report came with the earlier evaluation.
        evaluate = f"# OLD.eval.json: the {earlier} file's evaluation\n{evaluate}"
        evaluate += " --carry-over OLD.eval.json" + (" --data fashion-mnist" if fashion else "")
        if report.get("finetune"):
            evaluate += f" --finetune {sibling(model, '.finetune.json').name}"
    else:
        if twin:
            evaluate += f" --compare {run}/export/{Path(twin['file']).name}"
        if cfg:
            evaluate += f" --run {run}"
    notes = report.get("notes")
    if notes:
        evaluate += f" --notes {notes}"
    return {
        "main": main | {"file": model.name},
        "twin": twin,
        "config": cfg,
        "export": report.get("export"),
        "goals": report.get("goals") or DEFAULT_GOALS,
        "fashion": fashion,
        "figures": figures,
        "run": run,
        "train_command": _train_command(cfg, fashion, run) if cfg else "",
        "evaluate_command": evaluate,
    }


def _distill_options(config: dict[str, Any]) -> str:
    """The ``distill`` options of the kept student (paths replaced by the card's file names)."""
    given = {k: v for k, v in config.items() if v not in (None, "None", 0, 0.0, False)}
    if given.get("dense_input_bits") != 7:
        given = {k: v for k, v in given.items() if k not in ("dense_input_bits", "narrow")}
    elif given.get("narrow") == "all":
        del given["narrow"]
    if given.get("device") != "cpu":
        given.pop("device", None)
    opts = []
    keys = ("lr", "batch", "mix", "scale_lr", "ema", "extra", "paste", "steps", "seed")
    for key in (*keys, "dense_input_bits", "narrow", "init", "device"):
        if key not in given or (key == "paste" and "extra" not in given):
            continue
        value = "extra.npz" if key == "extra" else given[key]
        opts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(opts)


def context(model: Path) -> dict[str, Any]:
    """Everything the template reads, from the files beside ``model``."""
    report = json.loads(sibling(model, ".eval.json").read_text())
    cpus_file = sibling(model, ".cpus.json")
    cpus = json.loads(cpus_file.read_text()) if cpus_file.is_file() else []
    pre = report.get("export_pretrained")
    notes_path = report.get("notes")
    notes = (REPO_ROOT / notes_path).read_text().strip() if notes_path else None
    distill = (pre or {}).get("distillation") or {}
    config = distill.get("config") or {}
    return {
        "model": _model_facts(model),
        "pretrained": pre,
        "trained": None if pre else _trained(model, report),
        "notes": notes,
        "cpus": cpu_rows(cpus),
        "noise_bound": noise_bound(model),
        "distill_options": _distill_options(config),
        "distill_extra": config.get("extra") not in (None, "None", 0, 0.0, False, ""),
        "similarity": _optional_json(sibling(model, ".similarity.json")),
        "narrowed": report.get("narrowed"),
        "finetune": _finetune(report),
    }


def _finetune(report: dict[str, Any]) -> dict[str, Any] | None:
    """``dyadic-finetune``'s report (``evaluate --finetune``) and this CPU's count of images
    whose two executions agree to the bit (``evaluate``'s own cpu-check row), or None."""
    done = report.get("finetune")
    if not done:
        return None
    check = report.get("cpu_check") or {}
    return done | {
        "identical": check.get("identical_images"),
        "images": check.get("images"),
        "cpu": cpu.summary(check["cpu"]) if check.get("cpu") else None,
    }


def _optional_json(path: Path) -> dict[str, Any] | None:
    """A data file the card shows a section for only when it exists (``retrieval --write``)."""
    return json.loads(path.read_text()) if path.is_file() else None


def render(model: Path) -> str:
    """The card of ``model`` as markdown."""
    text = environment().get_template(TEMPLATE.name).render(**context(model))
    # Conditional sections leave runs of blank lines where they are absent: one is enough.
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def write(model: Path) -> Path:
    """Render and write ``<stem>.md`` beside the model; its path."""
    path = sibling(model, ".md")
    path.write_text(render(model), encoding="utf-8")
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``card``."""
    p.add_argument("models", nargs="+", type=Path, help="ONNX files whose cards to re-render")


def run(args: argparse.Namespace) -> int:
    """Re-render each model's card from its data files."""
    for model in args.models:
        print(f"card {write(model)}")
    return 0
