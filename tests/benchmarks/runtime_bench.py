"""`./noxw -s bench -- runtime`: the same packaged version served by TensorFlow and by its lean form (ONNX Runtime).

For the digits champion and the heavy model of the serve benchmark (a wide random-weight MLP, >= 10 ms a row with
TensorFlow), the batched service (2 workers, 127.0.0.1) is started with SERVE_RUNTIME=tensorflow and with the
default (the version's lean form), rounds interleaved. Per start: seconds from the command to `/readyz`; requests/s
of single-row POST /predict at c=64 (wrk, closed loop); the resident memory (RSS) of each API worker and of the
arbiter, sampled every half second under that load (the peak); for digits, the no-op route of the same lean
service at c=64 (the HTTP stack's ceiling). A job worker's memory: a fresh process that imports the worker, loads
the packaged version as the worker does and predicts micro-batches of 64 rows for two seconds (its peak RSS).
Median of the rounds (min-max). Writes docs/benchmarks/runtime.md.
Options: --duration S (default 8), --runs N (default 3), --models digits,heavy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from common import DOCS, ROOT, header
from serve_bench import Subject, digits, heavy, serve, server_env, warm, wrk

RUNTIMES = ("tensorflow", "auto")  # SERVE_RUNTIME: TensorFlow for every version, or the version's lean form
SHOWN = {"tensorflow": "TensorFlow", "auto": "ONNX Runtime (lean form)"}
CONCURRENCY = 64
JOB_WORKER_PROBE = """
import json, sys, time
import numpy as np
import pika, pymongo  # what the worker imports besides the model
import service.jobs.worker  # noqa: F401
from service.serving.packaged import load_packaged
model = load_packaged(sys.argv[1], serve_runtime=sys.argv[2])
rows = {t.name: np.random.default_rng(0).uniform(0, 16, (64, *t.shape)).astype(t.dtype) for t in model.contract.inputs}
deadline, calls = time.monotonic() + 2, 0
while time.monotonic() < deadline:
    model.predict(rows)
    calls += 1
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"rss_mb": peak / 1024, "runtime": model.runtime, "mlflow": "mlflow" in sys.modules,
                  "tensorflow": "tensorflow" in sys.modules, "calls": calls}))
"""


@dataclass
class Start:
    model: str
    runtime: str
    run: int
    ready_s: float = float("nan")
    rps: float = float("nan")
    p99_ms: float = float("nan")
    errors: int = 0
    worker_mb: list[float] = field(default_factory=list)  # peak RSS of each API worker under load
    arbiter_mb: float = float("nan")
    noop_rps: float = float("nan")
    job_worker_mb: float = float("nan")
    served_by: str = ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py runtime", description=__doc__)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", default="digits,heavy")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install -y wrk", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="nbship-runtime-bench-"))
    starts: list[Start] = []
    try:
        base = {"BENTOML_HOME": str(work / "bentoml")}
        subjects = [
            digits(base, work / "digits-store") if name == "digits" else heavy(base, work / "heavy-store")
            for name in args.models.split(",")
        ]
        for run in range(1, args.runs + 1):
            for subject in subjects:
                for runtime in RUNTIMES if run % 2 else RUNTIMES[::-1]:
                    start = measure(subject, runtime, run, args.duration, work)
                    print(
                        f"  run {run} {subject.name:6} {runtime:10} ready {start.ready_s:5.1f} s  {start.rps:7.1f} rps"
                        f"  workers {'/'.join(f'{mb:.0f}' for mb in start.worker_mb)} MB  arbiter"
                        f" {start.arbiter_mb:.0f} MB  job worker {start.job_worker_mb:.0f} MB  noop {start.noop_rps:.0f}"
                        f"  ({start.served_by})",
                        flush=True,
                    )
                    starts.append(start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (DOCS / "runtime.md").write_text(report(starts, args.duration, args.runs))
    print((DOCS / "runtime.md").read_text())
    return 0


def measure(subject: Subject, runtime: str, run: int, duration: int, work: Path) -> Start:
    import psutil

    start = Start(subject.name, runtime, run)
    served = replace(subject, env={**subject.env, "SERVE_RUNTIME": runtime})
    row = [float(v % 17) for v in range(64)]
    body = json.dumps({"instances": [row]})
    began = time.monotonic()
    with serve("batched", served, _free_port(), work) as (url, pid):
        start.ready_s = time.monotonic() - began
        arbiter = psutil.Process(pid)
        workers = [p for p in arbiter.children(recursive=True) if "python" in " ".join(p.cmdline())]
        log = (work / f"{served.name}-batched.log").read_text()
        start.served_by = "; ".join(sorted({line.split("(", 1)[-1].rstrip(")") for line in log.splitlines()
                                            if "API worker " in line}))  # fmt: skip
        warm(url + "/predict", body, work)
        peaks: dict[int, float] = {}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for process in [arbiter, *workers]:
                    try:
                        mb = process.memory_info().rss / 2**20
                    except psutil.Error:
                        continue
                    peaks[process.pid] = max(peaks.get(process.pid, 0.0), mb)
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        point = wrk(url + "/predict", body, CONCURRENCY, duration, work, subject.name, runtime)
        stop.set()
        sampler.join()
        start.rps, start.p99_ms, start.errors = point.rps, point.p99_ms, point.errors
        start.arbiter_mb = peaks.get(pid, float("nan"))
        start.worker_mb = sorted((peaks[p.pid] for p in workers if p.pid in peaks), reverse=True)
        if subject.name == "digits" and runtime == "auto":
            warm(url + "/noop", body, work)
            start.noop_rps = wrk(url + "/noop", body, CONCURRENCY, duration, work, subject.name, "noop").rps
    tag = _packaged_tag(subject)
    probe = subprocess.run(
        [sys.executable, "-c", JOB_WORKER_PROBE, tag, runtime],
        cwd=ROOT, env=server_env(subject.env), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if probe.returncode == 0:
        start.job_worker_mb = json.loads(probe.stdout.strip().splitlines()[-1])["rss_mb"]
    else:
        print(probe.stderr[-2000:], file=sys.stderr)
    return start


def _packaged_tag(subject: Subject) -> str:
    folder = subject.model_dir.parent  # <home>/models/<name>/<version>/mlflow_model
    return f"{folder.parent.name}:{folder.name}"


def _free_port() -> int:
    from serve_bench import free_port

    return free_port()


def _median(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    middle = statistics.median(values)
    digits = 0 if middle >= 100 else 1 if middle >= 1 else 2
    return f"{middle:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(starts: list[Start], duration: int, runs: int) -> str:
    lines = [
        header(
            "Serving runtimes: TensorFlow against the lean form (ONNX Runtime)", "./noxw -s bench -- runtime"
        ),
        __doc__.split("\n", 2)[2].split("Options:")[0].strip(),
        "",
        f"{runs} rounds of {duration} s a point; median (min-max).",
        "",
        "| model | runtime | ready | /predict rps (c=64) | p99 ms | API worker RSS | arbiter RSS | job worker RSS | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    models = sorted({s.model for s in starts}, key=["digits", "heavy"].index)
    for model in models:
        for runtime in RUNTIMES:
            ours = [s for s in starts if s.model == model and s.runtime == runtime]
            lines.append(
                f"| {model} | {SHOWN[runtime]} | {_median([s.ready_s for s in ours])} s | "
                f"{_median([s.rps for s in ours])} | {_median([s.p99_ms for s in ours])} | "
                f"{_median([max(s.worker_mb, default=float('nan')) for s in ours])} MB | "
                f"{_median([s.arbiter_mb for s in ours])} MB | {_median([s.job_worker_mb for s in ours])} MB | "
                f"{sum(s.errors for s in ours)} |"
            )
    lines += ["", "Ratios, lean against TensorFlow, round by round (same run, same machine):", ""]
    for model in models:
        by_run = {(s.run, s.runtime): s for s in starts if s.model == model}
        rounds = sorted({run for run, _ in by_run})
        pairs = [
            (by_run[(r, "auto")], by_run[(r, "tensorflow")])
            for r in rounds
            if (r, "auto") in by_run and (r, "tensorflow") in by_run
        ]
        rps = [lean.rps / tf.rps for lean, tf in pairs if tf.rps]
        ready = [lean.ready_s / tf.ready_s for lean, tf in pairs if tf.ready_s]
        memory = [
            max(lean.worker_mb) / max(tf.worker_mb) for lean, tf in pairs if lean.worker_mb and tf.worker_mb
        ]
        lines.append(
            f"- {model}: requests/s {_ratios(rps)}; time to ready {_ratios(ready)}; API worker RSS {_ratios(memory)}"
        )
        if model == "digits":
            ceiling = [lean.rps / lean.noop_rps for lean, _ in pairs if lean.noop_rps == lean.noop_rps]
            lines.append(
                f"- digits lean /predict against the no-op route of the same service: {_ratios(ceiling)}"
            )
    served = sorted({f"{s.model} {s.runtime}: {s.served_by}" for s in starts})
    lines += [
        "",
        "What each service's startup line said it served:",
        "",
        *[f"- {line}" for line in served],
        "",
    ]
    return "\n".join(lines)


def _ratios(values: list[float]) -> str:
    if not values:
        return "-"
    shown = ", ".join(f"{v:.2f}x" for v in values)
    return f"median {statistics.median(values):.2f}x ({shown})"
