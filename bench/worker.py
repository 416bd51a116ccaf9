"""Run one benchmark case in this (fresh) process and print its result as one JSON line.

``python -m bench.worker '{"case": "pipeline_image", "image": ..., "model": ..., "budget": {...}}'``

The peak resident set size (``ru_maxrss``) is read after the case, so it is the case's own
peak: interpreter, imports, model session, inputs and the work itself.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from bench.cases import CASES
from bench.timing import Budget


def main(argv: list[str]) -> int:
    """Run the case described by the JSON argument and print its result (one JSON line)."""
    spec = json.loads(argv[0])
    case = CASES[spec.pop("case")]
    budget = Budget(**spec.pop("budget", {}))
    t0 = time.perf_counter()
    result = case(budget=budget, **spec)
    result["case_wall_s"] = round(time.perf_counter() - t0, 2)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["python"] = sys.version.split()[0]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
