"""`./noxw -s bench -- serve`: single-row requests to the service and its peers, at concurrency 1, 8 and 64.

Servers (2 workers each, 127.0.0.1), measured one at a time with wrk (closed loop: C connections, each sending
its next request when the previous one is answered):
  batched    POST /predict, adaptive batching
  unbatched  the same service with BATCHING=false (one model call a request)
  noop       POST /noop on the batched service: same body, no model (the HTTP stack's ceiling)
  mlflow     `mlflow models serve` of the same registered version
  flask      Flask + gunicorn (tests/benchmarks/serve_flask_app.py), `model.predict` once per request
For the trained digits model (@champion of the project's store) and a compute-heavy Keras model with random
weights made here (>= 10 ms a single-row call), registered in a tmp store and packaged the same way.
Each point also records the server's CPU time per request (all its processes, from /proc): unlike requests/s, it
hardly moves when other jobs share the machine. Writes docs/benchmarks/serve.md and serve.png, keeping the
profile section of docs/benchmarks/serve_profile.md (see tests/benchmarks/serve_profile.py).
Options: --duration S, --models digits,heavy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from common import DOCS, ROOT, header
from support.processes import stop

CONCURRENCY = (1, 8, 64)
WORKERS = 2
SERVERS = ("batched", "unbatched", "noop", "mlflow", "flask")
HEAVY_NAME = "heavy-classifier"
HEAVY_MIN_MS = 10.0
READY_TIMEOUT_S = 240
PROFILE_NOTES = DOCS / "serve_profile.md"
LUA = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{body}]==]\n'


@dataclass(frozen=True)
class Point:
    model: str
    server: str
    concurrency: int
    rps: float  # successful responses per second
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx responses and socket errors
    answered: int = 0  # 2xx responses
    cpu_ms: float = float("nan")  # CPU time of the server's processes (all workers) per answered request
    load: float = float("nan")  # 1-minute load average at the end of the point


@dataclass(frozen=True)
class Subject:
    name: str  # "digits" or "heavy"
    env: dict[str, str]  # DATA_DIR / MODEL_NAME of its store, BENTOML_HOME
    model_uri: str  # models:/<name>/<version>
    model_dir: Path  # the MLflow model on disk (for the Flask peer)
    single_row_ms: float


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py serve", description=__doc__)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--models", default="digits,heavy")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install -y wrk", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="nbship-serve-bench-"))
    points: list[Point] = []
    subjects: list[Subject] = []
    try:
        base = {"BENTOML_HOME": str(work / "bentoml")}
        for name in args.models.split(","):
            subject = (
                digits(base, work / "digits-store") if name == "digits" else heavy(base, work / "heavy-store")
            )
            subjects.append(subject)
            print(
                f"{subject.name}: {subject.model_uri}, single-row call {subject.single_row_ms:.2f} ms",
                flush=True,
            )
            points += measure(subject, work, args.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "serve.md").write_text(report(points, subjects, args.duration))
    plot(points, DOCS / "serve.png")
    print((DOCS / "serve.md").read_text())
    return 0


# --- the models --------------------------------------------------------------------------------------------


def digits(base: dict[str, str], store: Path) -> Subject:
    """The project's @champion packaged into the benchmark's own BentoML home; if it cannot be loaded (its
    artifacts are gone), a champion trained here by `python -m pipeline train` in a tmp store."""
    from pipeline.settings import PipelineSettings

    settings = PipelineSettings()
    env = {**base, "DATA_DIR": str(settings.data_dir), "MODEL_NAME": settings.model_name}
    try:
        return packaged("digits", env, settings)
    except RuntimeError as exc:
        print(f"the project's champion does not package ({str(exc).strip().splitlines()[-1]}); training one")
    env = {**base, "DATA_DIR": str(store), "MODEL_NAME": settings.model_name}
    train = [sys.executable, "-m", "pipeline", "train", "--no-progress"]
    subprocess.run(train, cwd=ROOT, env=server_env(env), check=True, stdout=subprocess.DEVNULL)
    return packaged("digits", env, settings)


def heavy(base: dict[str, str], store: Path) -> Subject:
    """A wide random-weight MLP, logged, registered as @champion of a tmp store and packaged like the champion."""
    from pipeline.quiet import quiet

    quiet()
    import keras
    import mlflow
    import numpy as np

    from pipeline import notebook, registry, tracking
    from pipeline.lineage import MODEL_URI_TAG
    from pipeline.settings import PipelineSettings
    from service.models.loader import configure_threads

    configure_threads(1, 1)
    settings = PipelineSettings(data_dir=store, model_name=HEAVY_NAME, experiment_name="heavy")
    client = tracking.connect(settings)
    width, depth = 2048, 4
    while True:
        keras.utils.set_random_seed(0)
        inputs = keras.Input(shape=(64,), dtype="float32", name="pixels")
        x = inputs
        for _ in range(depth):
            x = keras.layers.Dense(width, activation="relu")(x)
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
        row = np.zeros((1, 64), np.float32)
        model.predict_on_batch(row)
        started = time.perf_counter()
        for _ in range(20):
            model.predict_on_batch(row)
        if (time.perf_counter() - started) / 20 * 1000 >= HEAVY_MIN_MS * 1.2 or depth >= 16:
            break
        depth += 2
    rows = np.random.default_rng(0).uniform(0, 16, size=(50, 64)).astype(np.float32)
    with mlflow.start_run(experiment_id=tracking.experiment_id(client, settings)) as run:
        mlflow.log_params({"width": width, "depth": depth})
        labels = np.arange(50) % 10  # random weights: the scores mean nothing
        notebook.log_model(model, task="classification", x_test=rows, y_test=labels)
    uri = client.get_run(run.info.run_id).data.tags[MODEL_URI_TAG]
    version = registry.register(client, HEAVY_NAME, uri, run.info.run_id, {})
    registry.promote(client, HEAVY_NAME, settings.champion_alias, str(version.version))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    env = {**base, "DATA_DIR": str(store), "MODEL_NAME": HEAVY_NAME, "EXPERIMENT_NAME": "heavy"}
    return packaged("heavy", env, settings)


def packaged(name: str, env: dict[str, str], settings: object) -> Subject:
    """`python -m pipeline package` the model; the single-row cost is timed on the packaged copy."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "package"],
        cwd=ROOT,
        env=server_env(env),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    tag = done.stdout.split(" as BentoML model ")[1].strip()
    model_name, bento_version = tag.split(":")
    model_dir = Path(env["BENTOML_HOME"]) / "models" / model_name / bento_version / "mlflow_model"
    version = bento_version[1:].split("-")[0]
    timing = subprocess.run(
        [sys.executable, "-c", TIME_SINGLE_ROW, str(model_dir)],
        env=server_env(env),
        capture_output=True,
        text=True,
    )
    single_row_ms = float(timing.stdout.strip().splitlines()[-1])
    return Subject(name, env, f"models:/{env['MODEL_NAME']}/{version}", model_dir, single_row_ms)


TIME_SINGLE_ROW = """
import sys, time, numpy as np
from pathlib import Path
from service.models.loader import load_model_dir
model = load_model_dir(Path(sys.argv[1]), "m", "1")
row = np.zeros((1, *model.contract.input.shape), model.contract.input.dtype)
started = time.perf_counter()
for _ in range(50):
    model.predict(row)
print((time.perf_counter() - started) / 50 * 1000)
"""


# --- the servers --------------------------------------------------------------------------------------------


def measure(subject: Subject, work: Path, duration: int) -> list[Point]:
    body = json.dumps({"instances": [[float(v % 17) for v in range(64)]]})
    points: list[Point] = []
    for server in ("batched", "unbatched", "mlflow", "flask"):
        port = free_port()
        with serve(server, subject, port, work) as (url, pid):
            paths = {"batched": ["/predict", "/noop"]}.get(
                server, ["/predict" if server != "mlflow" else "/invocations"]
            )
            for path in paths:
                label = "noop" if path == "/noop" else server
                warm(url + path, body, work)
                for concurrency in CONCURRENCY:
                    cpu_before = tree_cpu_s(pid)
                    point = wrk(url + path, body, concurrency, duration, work, subject.name, label)
                    cpu_s = tree_cpu_s(pid) - cpu_before
                    point = replace(
                        point,
                        cpu_ms=cpu_s * 1000 / point.answered if point.answered else float("nan"),
                        load=os.getloadavg()[0],
                    )
                    print(
                        f"  {subject.name:6} {label:9} c={concurrency:<3} {point.rps:8.1f} rps  p50 {point.p50_ms:7.1f} ms"
                        f"  p99 {point.p99_ms:7.1f} ms  errors {point.errors}  cpu {point.cpu_ms:5.2f} ms/req"
                        f"  load {point.load:.1f}",
                        flush=True,
                    )
                    points.append(point)
    return points


def server_env(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # mlflow runs `uvicorn` by name
    quiet = {
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONWARNINGS": "ignore",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    return {**env, "PATH": path, **quiet, **extra}


def command(server: str, subject: Subject, port: int) -> tuple[list[str], dict[str, str]]:
    bin_dir = Path(sys.executable).parent
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if server in ("batched", "unbatched"):
        env = {"WORKERS": str(WORKERS), "NOOP_ENDPOINT": "1", "BATCHING": str(server == "batched").lower()}
        if subject.name == "heavy":
            env["MAX_LATENCY_MS"] = "5000"  # a hard bound: keep it above a full batch of the heavy model
        return [str(bin_dir / "bentoml"), "serve", "service.service:PredictionService", *address], env
    if server == "mlflow":
        from pipeline.settings import PipelineSettings

        tracking = PipelineSettings(data_dir=Path(subject.env["DATA_DIR"])).tracking_uri
        argv = [str(bin_dir / "mlflow"), "models", "serve", "-m", subject.model_uri, "--env-manager", "local"]
        return [*argv, "-w", str(WORKERS), "-h", "127.0.0.1", "-p", str(port)], {
            "MLFLOW_TRACKING_URI": tracking
        }
    argv = [str(bin_dir / "gunicorn"), "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "--timeout", "120"]
    here = str(Path(__file__).resolve().parent)
    return [*argv, "--chdir", here, "serve_flask_app:app"], {"MODEL_DIR": str(subject.model_dir)}


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (the server's workers)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
    except psutil.NoSuchProcess:
        pass
    return total


@contextmanager
def serve(server: str, subject: Subject, port: int, work: Path) -> Iterator[tuple[str, int]]:
    """Start the server in its own process group, wait until it answers, stop it by its PID."""
    argv, extra = command(server, subject, port)
    log = (work / f"{subject.name}-{server}.log").open("w")
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=server_env({**subject.env, **extra}),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            ready(url, server, process)
        except (RuntimeError, TimeoutError):
            log.flush()
            print((work / f"{subject.name}-{server}.log").read_text()[-3000:], file=sys.stderr)
            raise
        yield url, process.pid
    finally:
        stop(process, timeout_s=30)
        log.close()


def ready(url: str, server: str, process: subprocess.Popen[bytes]) -> None:
    import urllib.error
    import urllib.request

    probe = {"mlflow": "/health", "flask": "/predict"}.get(server, "/readyz")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{server} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url + probe, timeout=2)
            return
        except urllib.error.HTTPError:  # answering (Flask: 405 to GET): ready
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{server} not ready after {READY_TIMEOUT_S} s")


def warm(url: str, body: str, work: Path) -> None:
    """Each worker's first calls (graph warm-up, batching dispatcher training) are not measured."""
    wrk(url, body, 2, 3, work, "", "")


def wrk(url: str, body: str, concurrency: int, duration: int, work: Path, model: str, server: str) -> Point:
    script = work / "post.lua"
    script.write_text(LUA.format(body=body))
    threads = min(2, concurrency)
    argv = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s", "--latency"]
    out = subprocess.run([*argv, "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    elapsed = float(re.search(r"requests in ([\d.]+)(m?s)", out).group(1))  # type: ignore[union-attr]
    if re.search(r"requests in [\d.]+ms", out):
        elapsed /= 1000
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(value) for value in m.groups())
    return Point(
        model,
        server,
        concurrency,
        max(0, total - errors) / elapsed,
        latency(out, "50%"),
        latency(out, "99%"),
        errors,
        max(0, total - errors),
    )


def latency(out: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the report ---------------------------------------------------------------------------------------------


def find(points: list[Point], model: str, server: str, concurrency: int = 64) -> Point | None:
    return next(
        (p for p in points if (p.model, p.server, p.concurrency) == (model, server, concurrency)), None
    )


def ratio(points: list[Point], model: str, top: str, bottom: str) -> float:
    a, b = find(points, model, top), find(points, model, bottom)
    return a.rps / b.rps if a and b and b.rps > 0 else float("nan")


def targets(points: list[Point]) -> list[tuple[str, float, float]]:
    return [
        ("digits: /predict / no-op ceiling", ratio(points, "digits", "batched", "noop"), 0.8),
        ("digits: /predict / mlflow models serve", ratio(points, "digits", "batched", "mlflow"), 20.0),
        ("heavy: batched / unbatched", ratio(points, "heavy", "batched", "unbatched"), 3.0),
        ("heavy: batched / Flask + gunicorn", ratio(points, "heavy", "batched", "flask"), 2.0),
    ]


def report(points: list[Point], subjects: list[Subject], duration: int) -> str:
    lines = [header("Serve benchmark"), ""]
    lines.append(
        f"Single-row `POST` requests from wrk (closed loop, {duration} s per point, `--timeout 10s`) on 127.0.0.1; "
        f"every server runs {WORKERS} workers on the same machine as wrk. rps counts 2xx answers only; errors are "
        "non-2xx answers and socket errors. `noop` is an `async` API of the same service parsing the same body "
        "and answering a small pydantic model, as /predict does (the HTTP stack's ceiling). `flask` follows the "
        "classic recipe: `model.predict` once per request. *server CPU ms/request*: CPU time of all the server's "
        "processes during the point over the requests answered (wrk's own CPU not included); *load*: 1-minute "
        "load average at the end of the point (2 cores).\n"
    )
    for subject in subjects:
        lines.append(
            f"- **{subject.name}**: `{subject.model_uri}`, single-row model call {subject.single_row_ms:.2f} ms"
        )
    lines += [
        "",
        "| model | server | concurrency | requests/s | p50 ms | p99 ms | errors | server CPU ms/request | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.model} | {p.server} | {p.concurrency} | {p.rps:.1f} | {p.p50_ms:.1f} | {p.p99_ms:.1f} "
            f"| {p.errors} | {p.cpu_ms:.2f} | {p.load:.1f} |"
        )
    lines += [
        "",
        "## Targets at concurrency 64",
        "",
        "| target | measured | goal | met |",
        "|---|---:|---:|---|",
    ]
    for name, value, goal in targets(points):
        lines.append(f"| {name} | {value:.2f}x | {goal:g}x | {'yes' if value >= goal else 'no'} |")
    lines += ["", "![latency and throughput](serve.png)", ""]
    if PROFILE_NOTES.exists():  # the profile (py-spy) of the served workers, kept across runs
        lines += [PROFILE_NOTES.read_text().rstrip(), ""]
    return "\n".join(lines)


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({p.model for p in points}, key=["digits", "heavy"].index)
    figure, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
    for column, model in enumerate(models):
        for server in SERVERS:
            series = [p for p in points if p.model == model and p.server == server]
            if not series:
                continue
            xs = [p.concurrency for p in series]
            axes[0][column].plot(xs, [p.rps for p in series], marker="o", label=server)
            axes[1][column].plot(xs, [p.p99_ms for p in series], marker="o", label=server)
        axes[0][column].set_title(f"{model}: throughput")
        axes[0][column].set_ylabel("requests/s")
        axes[1][column].set_title(f"{model}: p99 latency")
        axes[1][column].set_ylabel("ms")
        axes[1][column].set_yscale("log")
        for axis in axes[:, column]:
            axis.set_xscale("log", base=2)
            axis.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
            axis.set_xlabel("concurrent connections")
            axis.grid(True, alpha=0.3)
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
