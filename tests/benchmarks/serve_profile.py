"""Where a served worker's time goes: py-spy samples of every worker while wrk drives one endpoint at c=64.

    .venv/bin/python tests/benchmarks/serve_profile.py [--models digits,heavy] [--duration 8] [--out DIR]

Needs `py-spy` on PATH (`pip install py-spy`, outside the project) and permission to attach (root or
ptrace_scope 0). For each model and server (batched /predict, unbatched /predict, /noop) it records every worker
(`py-spy record -f raw`), classifies each sample by the deepest frame of a known kind (tracing, HTTP protocol,
body parsing, validation, model, ...) and prints the shares with the server's CPU time per request, as a
Markdown table; the raw stacks stay in --out (render one with `py-spy`'s flamegraph or speedscope).

Samples count Python threads that are running or runnable, so under load they include waiting for a core; the
CPU time per request (from /proc) is the absolute figure the shares divide. TensorFlow's own threads are native
and not sampled: the model's share is the Python thread waiting on it, a lower bound for the heavy model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `support` (as run.py)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_bench as bench

CATEGORIES = [  # (name, regex over one frame); the deepest frame matching any of them names the sample
    ("model call", r"/tensorflow/|/keras/|service/models/loader\.py"),
    ("validation (schemas.py)", r"service/schemas\.py"),
    ("response building (respond, batching.py)", r"respond \(|service/batching\.py|runner/container\.py"),
    ("tracing (OpenTelemetry)", r"opentelemetry"),
    ("metrics (prometheus)", r"prometheus_client|http/instruments\.py"),
    ("body parsing (JSON + pydantic)", r"from_http_request|serde\.py|pydantic|starlette/requests\.py"),
    ("response serialization", r"to_http_response|IterableResponse|starlette/responses\.py"),
    ("batching dispatcher", r"marshal/dispatcher\.py|batch_infer"),
    ("thread hop (anyio worker thread)", r"/anyio/|concurrent/futures|queue\.py|threading\.py"),
    (
        "HTTP protocol (uvicorn, h11 or httptools, transport)",
        r"/h11/|/httptools/|/uvicorn/|selector_events\.py|streams\.py",
    ),
    (
        "our ASGI middlewares (service/: access, JSON errors, content type, docs page, bare /jobs)",
        r"service/(access|json_errors|content_type|docs_page)\.py|service/jobs/api\.py",
    ),
    (
        "ASGI routing, middleware, BentoML glue",
        r"/starlette/|_bentoml_impl/|_bentoml_sdk/|/bentoml/|simple_di|inspect\.py|contextlib\.py|/fastapi/",
    ),
    ("event loop (asyncio or uvloop, idle epoll)", r"asyncio/|selectors\.py|/uvloop/"),
    ("other threads (pymongo monitors, ...)", r"pymongo|/bson/"),
]
SPY = ["py-spy", "record", "--full-filenames", "--nonblocking", "-r", "200"]
SERVERS = (("batched", "/predict"), ("unbatched", "/predict"), ("noop", "/noop"))


def classify(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if re.search(pattern, frame):
                return name
    return "other"


def shares(raw_files: list[Path]) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for path in raw_files:
        for line in path.read_text().splitlines():
            if line.strip():
                stack, count = line.rsplit(" ", 1)
                counts[classify(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return {name: 100 * n / total for name, n in counts.items()}


def profile(subject: bench.Subject, server: str, path: str, work: Path, out: Path, duration: int) -> dict:
    body = json.dumps({"instances": [[float(v % 17) for v in range(64)]]})
    mode = "batched" if server in ("batched", "noop") else "unbatched"
    with bench.serve(mode, subject, bench.free_port(), work) as (url, pid):
        bench.warm(url + path, body, work)
        import psutil

        workers = [child.pid for child in psutil.Process(pid).children(recursive=True)]
        before = bench.tree_cpu_s(pid)
        script = work / "post.lua"
        script.write_text(bench.LUA.format(body=body))
        argv = ["wrk", "-t2", "-c64", f"-d{duration + 4}s", "--timeout", "10s", "-s", str(script), url + path]
        load = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        raws = [out / f"{subject.name}-{server}-{worker}.raw" for worker in workers]
        spies = [
            subprocess.Popen(
                [*SPY, "-d", str(duration), "-f", "raw", "-o", str(raw), "--pid", str(worker)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for worker, raw in zip(workers, raws, strict=True)
        ]
        for spy in spies:
            spy.wait()
        text, _ = load.communicate()
        cpu_s = bench.tree_cpu_s(pid) - before
    answered = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    return {
        "rps": rps,
        "cpu_ms": cpu_s * 1000 / answered if answered else float("nan"),
        "shares": shares([raw for raw in raws if raw.exists()]),
        "load": os.getloadavg()[0],
    }


def table(results: dict[str, dict]) -> str:
    columns = list(results)
    names = [name for name, _ in CATEGORIES] + ["other"]
    lines = [
        "| share of worker samples (c=64) | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
        "| requests/s | " + " | ".join(f"{results[c]['rps']:.0f}" for c in columns) + " |",
        "| server CPU ms/request | " + " | ".join(f"{results[c]['cpu_ms']:.2f}" for c in columns) + " |",
    ]
    for name in names:
        if any(results[c]["shares"].get(name, 0) >= 0.5 for c in columns):
            cells = " | ".join(f"{results[c]['shares'].get(name, 0):.1f}%" for c in columns)
            lines.append(f"| {name} | {cells} |")
    loads = ", ".join(f"{results[c]['load']:.1f}" for c in columns)
    return "\n".join([*lines, "", f"Load average (1 min) after each column: {loads}."])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="digits,heavy")
    parser.add_argument("--duration", type=int, default=8, help="seconds of sampling per server")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the raw stacks (default: a tmp one)"
    )
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None or shutil.which("wrk") is None:
        print("needs py-spy (pip install py-spy) and wrk on PATH", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="nbship-serve-profile-"))
    out = args.out or work / "raw"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    try:
        base = {"BENTOML_HOME": str(work / "bentoml")}
        for name in args.models.split(","):
            store = work / f"{name}-store"
            subject = bench.digits(base, store) if name == "digits" else bench.heavy(base, store)
            for server, path in SERVERS:
                results[f"{name} {server}"] = profile(subject, server, path, work, out, args.duration)
                print(f"{name} {server}: done", file=sys.stderr, flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
