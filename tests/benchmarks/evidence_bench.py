"""`./noxw -s bench -- evidence`: what recording every answer costs `/predict` (service/evidence/records.py).

The digits champion served as serve_bench serves it (`bentoml serve`, 2 workers, adaptive batching), single-row
requests from wrk at concurrency 64 (--concurrency), three ways, interleaved round by round (--runs, default 3),
each server started anew:
  off        EVIDENCE=false
  sample     EVIDENCE_SAMPLE=0.1 (the default): every answer recorded, one in ten with its inputs
  all        EVIDENCE_SAMPLE=1.0: every answer recorded with its inputs
Records go to an nx-27017 process of the benchmark's own (or MONGO_URL), as in production to the job store.
Reported: requests/s and p99 per run, the medians, and the ratios against `off` in the same round; the records
each point logged and dropped (from /metrics), so a ratio bought by dropping records shows. Targets (issue 31):
sample at least 0.95x the requests/s and at most 1.1x the p99 of off; all at least 0.85x. Writes
docs/benchmarks/evidence.md. (Jobs: `./noxw -s bench -- jobs --cases 0,1 --out docs/benchmarks/evidence-jobs.md`, records on against off.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
from common import DOCS, header
from serve_bench import Point, digits, serve, warm, wrk
from support.job_servers import nx_server
from support.processes import free_port

CONFIGS = {
    "off": {"EVIDENCE": "false"},
    "sample": {"EVIDENCE": "true", "EVIDENCE_SAMPLE": "0.1"},
    "all": {"EVIDENCE": "true", "EVIDENCE_SAMPLE": "1.0"},
}
TARGETS = (("sample", "rps", 0.95), ("sample", "p99", 1.10), ("all", "rps", 0.85))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py evidence", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    row = [float(v % 17) for v in range(64)]
    body = json.dumps({"instances": [row]})
    points: list[tuple[Point, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="nbship-evidence-bench-") as tmp:
        work = Path(tmp)
        subject = digits({"BENTOML_HOME": str(work / "bentoml")}, work / "digits-store")
        with nx_server(work / "nx", free_port()) as mongo_url:
            for run in range(1, args.runs + 1):
                for label, config in CONFIGS.items():
                    env = {
                        **subject.env,
                        **config,
                        "MONGO_URL": mongo_url,
                        "MONGO_DATABASE": f"b{uuid.uuid4().hex[:8]}",
                    }
                    port = free_port()
                    with serve("batched", replace(subject, env=env), port, work) as (url, _pid):
                        warm(url + "/predict", body, work)
                        point = wrk(
                            url + "/predict", body, args.concurrency, args.duration, work, "digits", label
                        )
                        point = replace(point, run=run)
                        records = recorded(url)
                    points.append((point, records))
                    print(
                        f"run {run} {label:6} {point.rps:8.1f} rps  p99 {point.p99_ms:6.2f} ms  "
                        f"errors {point.errors}  records {records}",
                        flush=True,
                    )
    report = render(points, args)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "evidence.md").write_text(report)
    print(report)
    return 0


def recorded(url: str) -> dict[str, float]:
    """Records logged, sampled and dropped by the server's workers so far (its /metrics)."""
    totals = {"logged": 0.0, "sampled": 0.0, "dropped": 0.0}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("nbship_evidence_records_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            totals[outcome] += float(line.rsplit(" ", 1)[1])
    return totals


def render(points: list[tuple[Point, dict[str, float]]], args: argparse.Namespace) -> str:
    runs = sorted({p.run for p, _ in points})
    by = {(p.server, p.run): (p, r) for p, r in points}
    lines = [
        header("Evidence benchmark: the cost of recording every answer"),
        __doc__.split("\n", 2)[2].split("Writes docs")[0].strip() + "\n",
        f"{args.duration} s a point at c={args.concurrency}, {len(runs)} rounds.\n",
        "| round | records | requests/s | p99 ms | errors | records logged | with inputs | dropped |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for label in CONFIGS:
            point, records = by[(label, run)]
            lines.append(
                f"| {run} | {label} | {point.rps:.1f} | {point.p99_ms:.2f} | {point.errors} | "
                f"{records['logged']:.0f} | {records['sampled']:.0f} | {records['dropped']:.0f} |"
            )
    lines += [
        "",
        "| ratio against off, same round | per round | median | target | met |",
        "|---|---|---|---|---|",
    ]
    for label, figure, target in TARGETS:
        ratios = []
        for run in runs:
            point, off = by[(label, run)][0], by[("off", run)][0]
            ratios.append(point.rps / off.rps if figure == "rps" else point.p99_ms / off.p99_ms)
        median = statistics.median(ratios)
        met = median >= target if figure == "rps" else median <= target
        sign = ">=" if figure == "rps" else "<="
        lines.append(
            f"| {label} {'requests/s' if figure == 'rps' else 'p99'} | {', '.join(f'{r:.3f}' for r in ratios)} "
            f"| **{median:.3f}x** | {sign} {target} | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines) + "\n"
