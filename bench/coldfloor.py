"""The cold start's floor, in a fresh interpreter: what any Python process serving this model
must pay before its first answer.

``functions/venv/bin/python bench/coldfloor.py MODEL`` imports numpy, ONNX Runtime and Pillow,
creates an ONNX Runtime session for ``MODEL`` (its default options: all graph optimizations)
and runs one inference on a zero image of the model's input shape, then prints one JSON line
of timings. Nothing of this project is imported: ``bench/coldstart.py``'s product run (the
runtime's Flask and functions-framework, ``main.py``, the registry, a 12 MP JPEG decoded) is
judged against it (``run.py`` alternates the two, process by process).
"""

import time

T_START = time.perf_counter()
WALL_START = time.time()

import json  # noqa: E402
import sys  # noqa: E402


def main(model: str) -> dict:
    """Milliseconds of each stage, and the wall times the parent turns into totals."""
    t0 = time.perf_counter()
    import numpy as np
    import onnxruntime as ort
    from PIL import Image  # noqa: F401  (the product decodes with it)

    t1 = time.perf_counter()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    t2 = time.perf_counter()
    first = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    dtype = np.uint8 if first.type == "tensor(uint8)" else np.float32
    session.run(None, {first.name: np.zeros(shape, dtype=dtype)})
    t3 = time.perf_counter()
    return {
        "imports_ms": round((t1 - t0) * 1000, 1),
        "session_ms": round((t2 - t1) * 1000, 1),
        "inference_ms": round((t3 - t2) * 1000, 1),
        "result_wall_time": time.time(),
        "process_start_wall_time": WALL_START,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])), flush=True)
