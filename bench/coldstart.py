"""Cold start, as a new Cloud Functions instance pays it: run in a fresh interpreter.

``functions/venv/bin/python bench/coldstart.py IMAGE`` imports ``functions/main.py`` (what the
runtime does before the first event), loads the default model from the registry (what the
first event does), classifies ``IMAGE`` and prints one JSON line of timings. Only the
standard library is imported before ``main``, so the import time is the product's own.
"""

import time

T_START = time.perf_counter()
WALL_START = time.time()

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def main(image: str) -> dict:
    """Timings in milliseconds of each cold-start stage, and the result's top label."""
    tr = time.perf_counter()
    # What the Functions runtime (functions-framework, on Flask) imports before main.py: timed
    # apart because a deployed instance pays it whatever main.py does.
    import flask  # noqa: F401
    import functions_framework  # noqa: F401
    from functions_framework import _function_registry

    t0 = time.perf_counter()
    # As the runtime loads the deployed entry module: by file, its folder appended to the
    # import path by functions-framework itself, so ``media_classifier`` comes from there.
    module, spec = _function_registry.load_function_module(str(FUNCTIONS / "main.py"))
    spec.loader.exec_module(module)

    t1 = time.perf_counter()
    from media_classifier import config
    from media_classifier.inference.model import default_registry
    from media_classifier.inference.pipeline import classify_file

    model = default_registry().get(config.DEFAULT_MODEL.value)
    t2 = time.perf_counter()
    result = classify_file(image, model, top_k=config.TOP_K.value, limits=config.limits())
    t3 = time.perf_counter()
    return {
        "runtime_imports_ms": round((t0 - tr) * 1000, 1),
        "import_main_ms": round((t1 - t0) * 1000, 1),
        "model_load_ms": round((t2 - t1) * 1000, 1),
        "first_inference_ms": round((t3 - t2) * 1000, 1),
        "in_process_ms": round((t3 - T_START) * 1000, 1),
        "result_wall_time": time.time(),
        "top1": result.labels[0]["label"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "python": sys.version.split()[0],
        "process_start_wall_time": WALL_START,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])), flush=True)
