"""Side by side: what exact int8 answers cost on AVX2 kernels, and what this CPU runs.

On x86 CPUs without VNNI the serving code asks ONNX Runtime for its exact U8U8 kernels instead
of the saturating U8S8 ones, unless the file's dense layers take 7-bit activations, which U8S8
cannot saturate (``media_classifier.inference.model.needs_exact_int8``). This times, for each
model file, batch-1 inference with the serving options:

* on this CPU as it is (what serving runs here);
* with AVX-512, VNNI and AMX hidden from CPUID (:mod:`model_build.cpuid_mask`), so ONNX Runtime
  runs its AVX2 kernels natively: the path serving picks there for the file, and the plain
  U8S8 path. Their ratio is what correct answers cost on AVX2-only CPUs (1.00 for a file
  served by U8S8 itself; pass the file it was made from too, to compare across files).

Each number is one fresh process's median over ``--runs`` calls; every round runs every file
and column once (a burst of load on a shared machine then hits them alike) and the table shows
the median over rounds; given several files, also the median of per-round ratios to the last
one. Timings are never judged; the table says which CPU gave them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from model_build import cpuid_mask
from model_build.serving import REPO_ROOT

SAMPLE = REPO_ROOT / "samples" / "images" / "coffee.jpg"
MODELS = REPO_ROOT / "functions" / "models"
#: Paired column: a file served on AVX2 kernels against the baseline file's plain U8S8 there.
SERVED_VS_BASE_U8S8 = "AVX2 served / baseline's U8S8"
#: (column, masked, exact_int8): exact_int8 None is what serving picks for the CPU it sees.
VARIANTS = (
    ("this CPU, served", False, None),
    ("AVX2 kernels, served", True, None),
    ("AVX2 kernels, U8S8", True, False),
)
#: The two AVX2 columns by name: as served, and the plain (possibly saturating) U8S8 path.
ON_AVX2, PLAIN_U8S8 = VARIANTS[1][0], VARIANTS[2][0]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", type=Path, help="int8 files (default: the shipped ones)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--runs", type=int, default=200, help="timed calls per process")
    p.add_argument("--rounds", type=int, default=5, help="processes per column and model")
    p.add_argument("--quick", action="store_true", help="1 round of 20 calls (tests)")
    p.add_argument("--out", type=Path, help="write the rows as JSON here too")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--exact", choices=("auto", "on", "off"), default="auto", help=argparse.SUPPRESS)


def _time_one(path: Path, threads: int, runs: int, exact: bool | None) -> dict[str, Any]:
    """Median batch-1 milliseconds of the serving session (``exact`` None: as serving picks)."""
    import onnxruntime as ort

    from media_classifier.inference import identity
    from media_classifier.inference.model import needs_exact_int8, session_options
    from model_build.cpu import describe
    from model_build.serving import prepare_image

    if exact is None:
        exact = needs_exact_int8(identity.metadata(path.read_bytes()))
    opts = session_options(threads, exact_int8=exact)
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    resize = session.get_modelmeta().custom_metadata_map["resize"]
    x = prepare_image(SAMPLE.read_bytes(), (inp.shape[1], inp.shape[2]), resize)[None]
    feed = {inp.name: x}
    for _ in range(20):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t) * 1000.0)
    return {"ms": statistics.median(times), "cpu": describe(), "exact": exact}


def _child(path: Path, threads: int, runs: int, *, masked: bool, exact: bool | None) -> dict:
    flag = {None: "auto", True: "on", False: "off"}[exact]
    cmd = [sys.executable, "-m", "model_build", "int8-latency", str(path), "--child"]
    cmd += ["--threads", str(threads), "--runs", str(runs), "--exact", flag]
    env = cpuid_mask.environ() if masked else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=600)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _labels(paths: list[Path]) -> dict[Path, str]:
    """File names, with their folder where two files share a name (a new build vs the shipped)."""
    counts = Counter(p.name for p in paths)
    return {p: p.name if counts[p.name] == 1 else f"{p.parent.name}/{p.name}" for p in paths}


def measure(paths: list[Path], threads: int, runs: int, rounds: int) -> dict[str, Any]:
    """Rows per model: median ms per column, and the CPU each column ran on.

    Every round runs every (file, column) process once, in reverse order on odd rounds, so
    two files are compared side by side too: a machine that grows quieter during the run
    (a just-started host) would otherwise favour whichever file went last. With two or more
    files, ``paired`` holds each file's per-round ratio to the last file, per column.
    """
    from model_build.cpu import summary

    unavailable = cpuid_mask.unavailable_reason()
    variants = [v for v in VARIANTS if not (v[1] and unavailable)]
    labels = _labels(paths)
    jobs = [(path, variant) for path in paths for variant in variants]
    samples: dict[tuple[str, str], list[float]] = {(labels[p], v[0]): [] for p, v in jobs}
    served: dict[str, dict[str, str]] = {labels[p]: {} for p in paths}
    cpus: dict[str, str] = {}
    for r in range(rounds):
        for path, (name, masked, exact) in jobs if r % 2 == 0 else reversed(jobs):
            out = _child(path, threads, runs, masked=masked, exact=exact)
            samples[labels[path], name].append(out["ms"])
            cpus[name] = summary(out["cpu"])
            served[labels[path]][name] = "exact U8U8" if out["exact"] else "U8S8"
    names = [v[0] for v in variants]
    rows = [
        {"model": labels[p], "threads": threads, "kernels": served[labels[p]]}
        | {n: round(statistics.median(samples[labels[p], n]), 3) for n in names}
        | {"samples": {n: [round(x, 3) for x in samples[labels[p], n]] for n in names}}
        for p in paths
    ]
    result: dict[str, Any] = {"rows": rows, "cpus": cpus, "mask_unavailable": unavailable}
    if len(paths) > 1:
        base = labels[paths[-1]]

        def ratio(model: str, column: str, base_column: str) -> float:
            pairs = zip(samples[model, column], samples[base, base_column], strict=True)
            return round(statistics.median(a / b for a, b in pairs), 3)

        paired_rows = []
        for p in paths[:-1]:
            label = labels[p]
            row: dict[str, Any] = {"model": label} | {n: ratio(label, n, n) for n in names}
            if PLAIN_U8S8 in names:  # the goal's yardstick: the baseline's fastest there
                row[SERVED_VS_BASE_U8S8] = ratio(label, ON_AVX2, PLAIN_U8S8)
            paired_rows.append(row)
        result["paired"] = {"baseline": base, "rows": paired_rows}
    return result


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per model (kernels served on AVX2), served/U8S8 on AVX2 last."""
    names = [n for n, _, _ in VARIANTS if n in result["cpus"]]
    served, plain = ON_AVX2, PLAIN_U8S8
    head = ["model", *[f"{n}, ms" for n in names]]
    if plain in names:
        head += ["served on AVX2", "served / U8S8 on AVX2"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row in result["rows"]:
        cells = [row["model"], *[f"{row[n]:.2f}" for n in names]]
        if plain in names:
            cells += [row["kernels"][served], f"{row[served] / row[plain]:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    paired = result.get("paired")
    if paired:
        lines += ["", f"Per-round ratio to {paired['baseline']} (median; same column, same round):"]
        cols = [n for n in (*names, SERVED_VS_BASE_U8S8) if n in paired["rows"][0]]
        lines += ["", "| model | " + " | ".join(cols) + " |", "|---" + "|---:" * len(cols) + "|"]
        for row in paired["rows"]:
            ratios = " | ".join(f"{row[n]:.2f}x" for n in cols)
            lines.append(f"| {row['model']} | {ratios} |")
    notes = [f"- {name}: {cpu}" for name, cpu in result["cpus"].items()]
    if result["mask_unavailable"]:
        notes.append(f"- AVX2 columns not measured: {result['mask_unavailable']}")
    return "\n".join([*lines, "", *notes])


def run(args: argparse.Namespace) -> int:
    paths = args.models or sorted(MODELS.glob("*.int8.onnx"))
    if args.child:
        exact = {"auto": None, "on": True, "off": False}[args.exact]
        print(json.dumps(_time_one(paths[0], args.threads, args.runs, exact)))
        return 0
    runs, rounds = (20, 1) if args.quick else (args.runs, args.rounds)
    result = measure(paths, args.threads, runs, rounds)
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0
