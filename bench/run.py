"""``make bench``: the product against the notebook way, on this machine, in one run.

Prints a Markdown table and writes ``results.json``, ``results.md`` and ``results.png``
(to ``bench/results/`` or ``--out``). Every case runs in a fresh process (``worker.py``):
the project's cases with the deployed interpreter (``functions/venv``, Python 3.12), the
notebook way with the model_build interpreter (the one with torch). ``--quick`` runs each
case a couple of times on a short video: what ``make test`` uses to show the script works;
its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import report
from bench.cases import ratio_summary
from bench.inputs import ensure_inputs
from bench.models import ensure_fp32, model_files
from bench.paths import (
    FUNCTIONS,
    FUNCTIONS_PYTHON,
    INT8_MODEL,
    REPO,
    RESULTS,
)
from bench.timing import QUICK, Budget, summarize

COLD_START = Path(__file__).resolve().parent / "coldstart.py"
COLD_FLOOR = Path(__file__).resolve().parent / "coldfloor.py"
FULL = {
    "image": Budget(warmup=3, min_iters=15, max_iters=300, seconds=4.0),
    "notebook": Budget(warmup=2, min_iters=10, max_iters=50, seconds=6.0),
    "inference": Budget(warmup=5, min_iters=20, max_iters=500, seconds=3.0),
    "video": Budget(warmup=1, min_iters=3, max_iters=5, seconds=0.0),
    "floor": Budget(warmup=2, min_iters=15, max_iters=300, seconds=5.0),
    "video_floor": Budget(warmup=1, min_iters=3, max_iters=3, seconds=0.0),
}
QUICK_BUDGETS = {k: QUICK for k in FULL} | {
    "video": Budget(0, 1, 1, 0.0),
    "video_floor": Budget(0, 1, 1, 0.0),
}


#: Before each case, wait (up to ``QUIET_WAIT_S``) for the 1-minute load average to drop
#: under this: the machine is shared, and a case measured during someone's build is noise.
#: Set by ``--quiet-load`` / ``--quiet-wait``; the load at each case's start is recorded.
QUIET = {"load": 1.5, "wait_s": 45.0}


def _wait_for_quiet() -> float:
    """Sleep until the load average is under ``QUIET["load"]`` or the wait runs out."""
    deadline = time.monotonic() + QUIET["wait_s"]
    while os.getloadavg()[0] >= QUIET["load"] and time.monotonic() < deadline:
        time.sleep(3)
    return round(os.getloadavg()[0], 2)


def _run_worker(python: Path | str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One case in a fresh process; an error becomes ``{"error": ...}`` so the run goes on."""
    load = _wait_for_quiet()
    result = _spawn_worker(python, spec, timeout)
    result["loadavg_at_start"] = load
    return result


def _spawn_worker(python: Path | str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [str(python), "-m", "bench.worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"exit {proc.returncode}: {tail[0]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _progress(label: str, case: dict[str, Any]) -> None:
    if "time" in case:
        t = case["time"]
        line = f"median {t['median_ms']:9.2f} ms  p90 {t['p90_ms']:9.2f} ms"
        print(f"  {label:28s} {line}", flush=True)
    else:
        print(f"  {label:28s} {case.get('error')}", flush=True)


def _progress_ratio(label: str, case: dict[str, Any], key: str | None = None) -> None:
    ratio = case.get("ratio", {})
    ratio = ratio.get(key, {}) if key else ratio
    if "median" in ratio:
        print(f"  {label:28s} median {ratio['median']:6.2f}x  min {ratio['min']:6.2f}x", flush=True)
    else:
        print(f"  {label:28s} {case.get('error')}", flush=True)


#: What the Functions runtime (and the emulator) puts in the environment: the SDK reads the
#: default bucket from it when ``main.py`` declares the Storage trigger.
FIREBASE_ENV = {
    "FIREBASE_CONFIG": json.dumps(
        {"projectId": "demo-media-classifier", "storageBucket": "demo-media-classifier.appspot.com"}
    ),
    "GCLOUD_PROJECT": "demo-media-classifier",
}


def _fresh_process(
    python: Path, script: Path, arg: Path, env: dict[str, str]
) -> dict[str, Any] | str:
    """One fresh process's JSON line plus ``to_first_result_ms`` (process start to result)."""
    started = time.time()
    proc = subprocess.run(
        [str(python), str(script), str(arg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=FUNCTIONS,
        env=env,
    )
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["?"])[-1]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["to_first_result_ms"] = round((row.pop("result_wall_time") - started) * 1000, 1)
    row["interpreter_start_ms"] = round((row.pop("process_start_wall_time") - started) * 1000, 1)
    return row


def cold_start(python: Path, image: Path, runs: int, model: Path = INT8_MODEL) -> dict[str, Any]:
    """``runs`` fresh product processes (after one unmeasured run that writes ``.pyc``
    files), each followed by a fresh floor process (``coldfloor.py``): the goal is judged on
    the per-pair ratio."""
    samples: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    env = FIREBASE_ENV | dict(os.environ)
    # The unmeasured first run must be able to write them (some sandboxes set this).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for i in range(runs + 1):
        load = _wait_for_quiet()
        row = _fresh_process(python, COLD_START, image, env)
        if isinstance(row, str):
            return {"error": row}
        floor = _fresh_process(python, COLD_FLOOR, model, env)
        if isinstance(floor, str):
            return {"error": f"floor: {floor}"}
        row["loadavg_at_start"] = load
        # What the product adds to an instance whose runtime (Flask) is already imported.
        row["after_runtime_imports_ms"] = round(
            row["to_first_result_ms"] - row["runtime_imports_ms"], 1
        )
        if i > 0:
            samples.append(row)
            floors.append(floor)
    stages = (
        "interpreter_start_ms",
        "runtime_imports_ms",
        "import_main_ms",
        "model_load_ms",
        "first_inference_ms",
        "to_first_result_ms",
        "after_runtime_imports_ms",
    )
    summary = {s: summarize([r[s] for r in samples]) for s in stages}
    floor_stages = ("interpreter_start_ms", "imports_ms", "session_ms", "inference_ms")
    floor_stages += ("to_first_result_ms",)
    product = [r["to_first_result_ms"] for r in samples]
    floor_ms = [f["to_first_result_ms"] for f in floors]
    return {
        "runs": samples,
        "summary": summary,
        "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in samples),
        "top1": samples[-1]["top1"],
        "floor": {
            "runs": floors,
            "summary": {s: summarize([f[s] for f in floors]) for s in floor_stages},
        },
        "ratio": ratio_summary(product, floor_ms),
        "ratio_after_runtime_imports": ratio_summary(
            [r["after_runtime_imports_ms"] for r in samples], floor_ms
        ),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every case; returns the results dict (also written to ``args.out``)."""
    budgets = QUICK_BUDGETS if args.quick else FULL
    seconds = args.video_seconds or (4.0 if args.quick else 60.0)
    fpy = FUNCTIONS_PYTHON if FUNCTIONS_PYTHON.is_file() else Path(sys.executable)
    inputs = ensure_inputs(fpy, video_seconds=seconds)
    fp32 = ensure_fp32()
    models = {"fp32": str(fp32), "int8": str(INT8_MODEL)}
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    res: dict[str, Any] = {"image": {}, "inference": {}, "video": {}}
    b = {k: asdict(v) for k, v in budgets.items()}

    print("1. per image, bytes to labels", flush=True)
    images = (
        ("jpeg_12mp", inputs.jpeg_12mp),
        ("jpeg_12mp_smooth", inputs.jpeg_12mp_smooth),
        ("jpeg_12mp_progressive", inputs.jpeg_12mp_progressive),
        ("heic_12mp", inputs.heic_12mp),
        ("png_03mp", inputs.png_03mp),
    )
    for name, path in images:
        ways: dict[str, Any] = {}
        if path.suffix == ".heic":  # not a goal case; shows what iPhone photos cost
            ways["notebook"] = {"error": "Pillow alone cannot open HEIC (needs a HEIF plugin)"}
        else:
            spec = {"case": "notebook_image", "image": str(path), "budget": b["notebook"]}
            ways["notebook"] = _run_worker(sys.executable, spec, 600)
        for key, model in models.items():
            spec = {"case": "pipeline_image", "image": str(path), "model": model}
            ways[key] = _run_worker(fpy, spec | {"budget": b["image"]}, 600)
        for way, case in ways.items():
            _progress(f"{name} {way}", case)
        res["image"][name] = ways

    print("2. inference alone", flush=True)
    for key, model in models.items():
        for batch in (1, 16):
            spec = {"case": "inference", "image": str(inputs.jpeg_12mp), "model": model}
            spec |= {"batch": batch, "budget": b["inference"]}
            res["inference"][f"{key}_b{batch}"] = case = _run_worker(fpy, spec, 600)
            _progress(f"{key} batch {batch}", case)

    print(f"3. video, {seconds:g} s 720p", flush=True)
    if args.skip_video:
        res["video"] = {"1fps": {"error": "skipped (--skip-video)"}}
    else:
        for key, every in (("1fps", 1.0), ("5fps", 0.2)):
            spec = {"case": "video", "video": str(inputs.video), "model": str(INT8_MODEL)}
            spec |= {"every_sec": every, "seconds": seconds, "budget": b["video"]}
            res["video"][key] = case = _run_worker(fpy, spec, 600)
            _progress(f"video {key}", case)

    print("4. goals against their floors, measured in turn in one process", flush=True)
    res["floors"] = floors = {}
    for name in ("jpeg_12mp", "png_03mp"):
        spec = {"case": "image_floor", "image": str(getattr(inputs, name))}
        spec |= {"model": str(INT8_MODEL), "budget": b["floor"]}
        floors[name] = case = _run_worker(fpy, spec, 600)
        _progress_ratio(f"{name} / floor", case)
    pair = {"jpeg_12mp": str(inputs.jpeg_12mp), "heic_12mp": str(inputs.heic_12mp)}
    spec = {"case": "image_pair", "images": pair, "model": str(INT8_MODEL), "budget": b["floor"]}
    floors["heic_vs_jpeg"] = case = _run_worker(fpy, spec, 600)
    _progress_ratio("heic_12mp / jpeg_12mp", case, "heic_12mp")
    if not args.skip_video:
        spec = {"case": "video_floor", "video": str(inputs.video), "model": str(INT8_MODEL)}
        spec |= {"every_sec": 1.0, "seconds": seconds, "budget": b["video_floor"]}
        floors["video_1fps"] = case = _run_worker(fpy, spec, 600)
        _progress_ratio("video 1fps / floor", case)

    print("5. cold start (each product process followed by a floor process)", flush=True)
    if FUNCTIONS_PYTHON.is_file():
        res["cold_start"] = cold_start(FUNCTIONS_PYTHON, inputs.jpeg_12mp, args.cold_runs)
    else:
        res["cold_start"] = {"error": f"{FUNCTIONS_PYTHON} missing (make venv)"}
    if "summary" in res["cold_start"]:
        _progress("to first result", {"time": res["cold_start"]["summary"]["to_first_result_ms"]})
        _progress_ratio("to first result / floor", res["cold_start"])

    res["models"] = model_files(fp32, INT8_MODEL)
    res["inputs"] = {
        k: {"path": str(v), "bytes": Path(v).stat().st_size}
        for k, v in asdict(inputs).items()
        if isinstance(v, Path)
    }
    res["meta"] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {_cpu_name()}",
        "cpus": len(os.sched_getaffinity(0)),
        "loadavg_before": loadavg_before,
        "nice": os.nice(0),
        "quiet": dict(QUIET),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "mode": "quick (numbers meaningless)" if args.quick else "full",
        "video_seconds": seconds,
        "project_python": str(fpy),
        "notebook_python": sys.executable,
        "budgets": b,
    }
    res["goals"] = report.goals(res)
    res["ratio_goals"] = report.ratio_goals(res)
    return res


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write JSON, Markdown and PNG."""
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__)
    p.add_argument("--quick", action="store_true", help="few iterations, short video (tests)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for results.*")
    p.add_argument("--video-seconds", type=float, default=None, help="clip length (default 60)")
    p.add_argument("--skip-video", action="store_true", help="leave out the video cases")
    p.add_argument("--cold-runs", type=int, default=None, help="cold-start processes (default 5)")
    p.add_argument("--quiet-load", type=float, default=None, help="wait for load below (1.5)")
    p.add_argument("--quiet-wait", type=float, default=None, help="at most seconds (45)")
    args = p.parse_args(argv)
    QUIET["load"] = args.quiet_load if args.quiet_load is not None else QUIET["load"]
    QUIET["wait_s"] = (
        args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else QUIET["wait_s"])
    )
    if args.cold_runs is None:
        args.cold_runs = 1 if args.quick else 5
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    table = report.markdown(res)
    (args.out / "results.md").write_text(table)
    report.chart(res, args.out / "results.png")
    print()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
