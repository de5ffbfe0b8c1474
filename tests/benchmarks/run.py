"""Entry point of `./noxw -s bench -- NAME [options]`; each benchmark writes its figures to docs/benchmarks/."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHMARKS = {
    "pipeline": "pipeline_bench",
    "jobs": "jobs_bench",
    "serve": "serve_bench",
    "chaos": "chaos_bench",
    "rollout": "rollout_bench",
    "coldstart": "coldstart_bench",
    "runtime": "runtime_bench",
    "evidence": "evidence_bench",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: run.py {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent)]  # the benchmarks, and tests/ for `support`
    return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
