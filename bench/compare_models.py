"""Two model files, same cases, alternating fresh processes: what a model change costs.

``make bench`` measures one model per run, and this shared machine's medians move by 10-30 %
between runs and more between days; a model change is only measured honestly against the
file it replaces at the same moment. Each round runs, for each file in turn, the benchmark's
own worker cases (``Model.predict`` at batch 1 and 16, and optionally the 60 s video at
1 frame/s) in fresh ``functions/venv`` processes; the table gives each file's range of
medians over the rounds.

    git show HEAD~1:functions/models/imagenet_mobilenet_v2.int8.onnx > /tmp/old.onnx
    model_build/.venv/bin/python -m bench.compare_models /tmp/old.onnx \\
        functions/models/imagenet_mobilenet_v2.int8.onnx --rounds 3 --video
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from bench.inputs import ensure_inputs
from bench.paths import FUNCTIONS_PYTHON
from bench.run import FULL, QUICK_BUDGETS, _run_worker


def _cases(args: argparse.Namespace) -> dict[str, dict]:
    """Case name -> worker spec without the model."""
    inputs = ensure_inputs(FUNCTIONS_PYTHON, 60.0)
    budgets = {k: asdict(v) for k, v in (QUICK_BUDGETS if args.quick else FULL).items()}
    cases = {
        f"batch {b}, ms per image": {
            "case": "inference",
            "image": str(inputs.jpeg_12mp),
            "batch": b,
            "budget": budgets["inference"],
        }
        for b in (1, 16)
    }
    if args.video:
        cases["60 s video at 1 frame/s, s"] = {
            "case": "video",
            "video": str(inputs.video),
            "every_sec": 1.0,
            "seconds": 60.0,
            "budget": budgets["video"],
        }
    return cases


def _value(name: str, result: dict) -> tuple[float, float]:
    """(median, peak RSS MiB) of one worker result, in the table's unit."""
    if "error" in result:
        raise RuntimeError(f"{name}: {result['error']}")
    if "per_image_median_ms" in result:
        return result["per_image_median_ms"], result["peak_rss_mib"]
    return result["time"]["median_ms"] / 1000.0, result["peak_rss_mib"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare_models", description=__doc__)
    p.add_argument("models", type=Path, nargs=2, help="the two ONNX files (before, after)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--video", action="store_true", help="also the 60 s video at 1 frame/s")
    p.add_argument("--quick", action="store_true", help="a few calls per case (tests)")
    args = p.parse_args(argv)
    cases = _cases(args)
    seen: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for name, spec in cases.items():
            for k, model in enumerate(args.models):
                result = _run_worker(FUNCTIONS_PYTHON, spec | {"model": str(model)}, 900)
                seen.setdefault((name, k), []).append(_value(name, result))
                print(f"round {r + 1} {name} {model.name}: {seen[(name, k)][-1]}", flush=True)
    head = " | ".join(f"`{m}`" for m in args.models)
    print(f"\n| median over {args.rounds} rounds (min-max) | {head} |\n|---|---:|---:|")
    for name in cases:
        cells = []
        for k in range(2):
            values = [v for v, _ in seen[(name, k)]]
            rss = max(m for _, m in seen[(name, k)])
            cells.append(f"{min(values):.2f}-{max(values):.2f} (peak RSS {rss:.0f} MiB)")
        print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
