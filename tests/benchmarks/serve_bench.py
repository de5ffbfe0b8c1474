"""`./noxw -s bench -- serve`: single-row requests to the service and its peers, at concurrency 1, 8 and 64.

Servers (2 workers each, 127.0.0.1), measured one at a time with wrk (closed loop: C connections, each sending
its next request when the previous one is answered):
  batched    POST /predict, adaptive batching
  unbatched  the same service with BATCHING=false (one model call a request)
  noop       POST /noop on the batched service: same body, no model (the HTTP stack's ceiling)
  mlflow     `mlflow models serve` of the same registered version
  flask      Flask + gunicorn (tests/benchmarks/serve_flask_app.py), `model.predict` once per request
  bentoml-mlflow  BentoML's own MLflow example (tests/benchmarks/serve_bentoml_mlflow.py): the registered
             version imported with `bentoml.mlflow.import_model`, a batchable API calling the pyfunc model
For the trained digits model (@champion of the project's store) and a compute-heavy Keras model with random
weights made here (>= 10 ms a single-row call), registered in a tmp store and packaged the same way.
Each point also records the server's CPU time per request (all its processes, from /proc): unlike requests/s, it
hardly moves when other jobs share the machine, and how the connections were spread over the server's
processes halfway through the point (established connections per worker). Writes docs/benchmarks/serve.md and
serve.png, keeping the notes of docs/benchmarks/serve_profile.md (see tests/benchmarks/serve_profile.py).
Options: --duration S, --models digits,heavy, --servers (default all), --concurrency 1,8,64, --runs N: N rounds,
every server started anew in each; the first round measures every concurrency, the others only the highest
(the targets' point), reported run by run and as the median with its spread.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from common import DOCS, ROOT, header
from support.processes import stop

CONCURRENCY = (1, 8, 64)
WORKERS = 2
SERVERS = ("batched", "infer", "unbatched", "noop", "mlflow", "flask", "bentoml-mlflow")
# The server process each label is measured on (the no-op is an API of the batched service), and its paths.
PROCESSES = {
    # `infer`: the Open Inference Protocol's, on the same service (its path names the model: see `path_of`).
    "batched": {"batched": "/predict", "infer": "/v2/models/{model}/infer", "noop": "/noop"},
    "unbatched": {"unbatched": "/predict"},
    "mlflow": {"mlflow": "/invocations"},
    "flask": {"flask": "/predict"},
    "bentoml-mlflow": {"bentoml-mlflow": "/predict"},
}
PEER_MODEL = "bentomlflow-example"
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
    run: int = 1  # the round it was measured in
    split: str = ""  # established connections per server process halfway through, most first: "33/31"


@dataclass(frozen=True)
class Subject:
    name: str  # "digits" or "heavy"
    env: dict[str, str]  # DATA_DIR / MODEL_NAME of its store, BENTOML_HOME
    model_uri: str  # models:/<name>/<version>
    model_dir: Path  # the MLflow model on disk (for the Flask peer)
    single_row_ms: float
    peer_tag: str = ""  # the BentoML MLflow example's own import of the version (bentoml-mlflow)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py serve", description=__doc__)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--models", default="digits,heavy")
    parser.add_argument("--servers", default=",".join(SERVERS), help="labels to measure (see above)")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    parser.add_argument(
        "--runs", type=int, default=1, help="rounds; after the first, only the highest concurrency"
    )
    args = parser.parse_args(argv)
    servers = [name for name in args.servers.split(",") if name]
    concurrencies = sorted(int(value) for value in args.concurrency.split(","))
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
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
            if "bentoml-mlflow" in servers:
                subject = replace(subject, peer_tag=import_for_peer(subject))
            subjects.append(subject)
            print(
                f"{subject.name}: {subject.model_uri}, single-row call {subject.single_row_ms:.2f} ms",
                flush=True,
            )
        for run in range(1, args.runs + 1):
            for subject in subjects:
                levels = concurrencies if run == 1 else concurrencies[-1:]
                points += measure(subject, work, args.duration, servers, levels, run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    DOCS.mkdir(parents=True, exist_ok=True)
    plotted = len(concurrencies) > 1
    (DOCS / "serve.md").write_text(report(points, subjects, args.duration, args.runs, plotted))
    if plotted:
        plot(medians(points), DOCS / "serve.png", concurrencies)
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
    from service.models.quiet import quiet

    quiet()
    import keras
    import mlflow
    import numpy as np
    from support.checked import runtime_tags

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
    runtime = runtime_tags(
        client, run.info.run_id, uri
    )  # as the pipeline would: its lean form, if it has one
    version = registry.register(
        client, HEAVY_NAME, uri, run.info.run_id, runtime, "tests/benchmarks/serve_bench.py"
    )
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


def import_for_peer(subject: Subject) -> str:
    """What the BentoML MLflow example does once before serving: `bentoml.mlflow.import_model` of the version."""
    from pipeline.settings import PipelineSettings

    tracking = PipelineSettings(data_dir=Path(subject.env["DATA_DIR"])).tracking_uri
    code = f"from serve_bentoml_mlflow import import_registered; print(import_registered({PEER_MODEL!r}, {subject.model_uri!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent,
        env=server_env({**subject.env, "MLFLOW_TRACKING_URI": tracking}),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout.strip().splitlines()[-1]


def infer_body(subject: Subject, row: list[float]) -> str:
    """The same row as an Open Inference Protocol request to the model's one input."""
    from service.models.contract import read_contract

    tensor = read_contract(subject.model_dir).input
    return json.dumps(
        {"inputs": [{"name": tensor.name, "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
    )


TIME_SINGLE_ROW = """
import sys, time, numpy as np
from pathlib import Path
from service.models.loader import load_model_dir
model = load_model_dir(Path(sys.argv[1]), "m", "1")
tensor = model.contract.input
rows = {tensor.name: np.zeros((1, *tensor.shape), tensor.dtype)}
started = time.perf_counter()
for _ in range(50):
    model.predict(rows)
print((time.perf_counter() - started) / 50 * 1000)
"""


# --- the servers --------------------------------------------------------------------------------------------


def measure(
    subject: Subject, work: Path, duration: int, servers: list[str], concurrencies: list[int], run: int
) -> list[Point]:
    row = [float(v % 17) for v in range(64)]
    predict_body = json.dumps({"instances": [row]})
    points: list[Point] = []
    for process, labels in PROCESSES.items():
        paths = {label: path for label, path in labels.items() if label in servers}
        if not paths:
            continue
        port = free_port()
        with serve(process, subject, port, work) as (url, pid):
            for label, path in paths.items():
                path = path.format(model=subject.env["MODEL_NAME"])
                body = infer_body(subject, row) if label == "infer" else predict_body
                warm(url + path, body, work)
                for concurrency in concurrencies:
                    cpu_before = tree_cpu_s(pid)
                    point = wrk(
                        url + path,
                        body,
                        concurrency,
                        duration,
                        work,
                        subject.name,
                        label,
                        sample=functools.partial(connection_split, pid, port),
                    )
                    cpu_s = tree_cpu_s(pid) - cpu_before
                    point = replace(
                        point,
                        cpu_ms=cpu_s * 1000 / point.answered if point.answered else float("nan"),
                        load=os.getloadavg()[0],
                        run=run,
                    )
                    print(
                        f"  run {run} {subject.name:6} {label:14} c={concurrency:<3} {point.rps:8.1f} rps"
                        f"  p50 {point.p50_ms:7.1f} ms  p99 {point.p99_ms:7.1f} ms  errors {point.errors}"
                        f"  cpu {point.cpu_ms:5.2f} ms/req  connections {point.split}  load {point.load:.1f}",
                        flush=True,
                    )
                    points.append(point)
    return points


def connection_split(pid: int, port: int) -> str:
    """Established connections to `port` held by each process of the server's tree (those holding any)."""
    import psutil

    counts: list[int] = []
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            held = process.net_connections("tcp")
        except psutil.Error:
            continue
        count = sum(1 for c in held if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
        if count:
            counts.append(count)
    return "/".join(str(count) for count in sorted(counts, reverse=True))


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
    here = str(Path(__file__).resolve().parent)
    if server in ("batched", "unbatched"):
        env = {"WORKERS": str(WORKERS), "BATCHING": str(server == "batched").lower()}
        if subject.name == "heavy":
            env["MAX_LATENCY_MS"] = "5000"  # a hard bound: keep it above a full batch of the heavy model
        # The production service with a no-op route added (tests/benchmarks/noop_service.py): the ceiling.
        serve = [str(bin_dir / "bentoml"), "serve", "noop_service:NoopService", "--working-dir", here]
        return [*serve, *address], env | {"PYTHONPATH": str(ROOT)}
    if server == "mlflow":
        from pipeline.settings import PipelineSettings

        tracking = PipelineSettings(data_dir=Path(subject.env["DATA_DIR"])).tracking_uri
        argv = [str(bin_dir / "mlflow"), "models", "serve", "-m", subject.model_uri, "--env-manager", "local"]
        return [*argv, "-w", str(WORKERS), "-h", "127.0.0.1", "-p", str(port)], {
            "MLFLOW_TRACKING_URI": tracking
        }
    if server == "bentoml-mlflow":
        argv = [
            str(bin_dir / "bentoml"),
            "serve",
            "serve_bentoml_mlflow:MLflowExample",
            "--working-dir",
            here,
        ]
        return [*argv, *address], {"PEER_MODEL": subject.peer_tag, "PEER_WORKERS": str(WORKERS)}
    argv = [str(bin_dir / "gunicorn"), "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "--timeout", "120"]
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


def wrk(
    url: str,
    body: str,
    concurrency: int,
    duration: int,
    work: Path,
    model: str,
    server: str,
    sample: Callable[[], str] | None = None,
) -> Point:
    """One wrk point; `sample`, called halfway through, says how the connections are spread (Point.split)."""
    script = work / "post.lua"
    script.write_text(LUA.format(body=body))
    threads = min(2, concurrency)
    argv = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s", "--latency"]
    load = subprocess.Popen([*argv, "-s", str(script), url], stdout=subprocess.PIPE, text=True)
    split = ""
    if sample is not None:
        time.sleep(duration / 2)
        split = sample()
    out, _ = load.communicate()
    if load.returncode != 0:
        raise subprocess.CalledProcessError(load.returncode, argv)
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
        split=split,
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

TARGETS = [  # (name, model, server, its baseline in the same round, goal)
    (
        "digits: /predict / no-op ceiling",
        "digits",
        "batched",
        "noop",
        0.87,
    ),  # issue 28: as before the contract
    ("digits: Open Inference Protocol infer / /predict", "digits", "infer", "batched", 0.95),
    ("digits: /predict / BentoML's MLflow example", "digits", "batched", "bentoml-mlflow", 3.0),
    ("digits: /predict / mlflow models serve", "digits", "batched", "mlflow", 20.0),
    ("heavy: batched / unbatched", "heavy", "batched", "unbatched", 3.0),
    ("heavy: batched / Flask + gunicorn", "heavy", "batched", "flask", 2.0),
]


def find(points: list[Point], model: str, server: str, concurrency: int, run: int) -> Point | None:
    key = (model, server, concurrency, run)
    return next((p for p in points if (p.model, p.server, p.concurrency, p.run) == key), None)


def ratios(points: list[Point], model: str, top: str, bottom: str) -> list[float]:
    """top / bottom at the highest concurrency, one ratio a round (both measured in the same round)."""
    highest = max((p.concurrency for p in points), default=0)
    found = []
    for run in sorted({p.run for p in points}):
        a, b = find(points, model, top, highest, run), find(points, model, bottom, highest, run)
        if a and b and b.rps > 0:
            found.append(a.rps / b.rps)
    return found


def medians(points: list[Point]) -> list[Point]:
    """One point per model, server and concurrency: the run with the median requests/s."""
    groups: dict[tuple[str, str, int], list[Point]] = {}
    for p in points:
        groups.setdefault((p.model, p.server, p.concurrency), []).append(p)
    return [sorted(group, key=lambda p: p.rps)[(len(group) - 1) // 2] for group in groups.values()]


def spread(values: list[float], unit: str = "") -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}{unit}"
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def headline(points: list[Point]) -> str:
    """The page's first figure, made from the table below it: the first target met or not, and at the lowest
    concurrency the same two servers' rates (one round measures it)."""
    name, model, top, bottom, goal = TARGETS[0]
    found = ratios(points, model, top, bottom)
    if not found:
        return ""
    highest = max(p.concurrency for p in points)
    lowest = min(p.concurrency for p in points)
    text = (
        f"**{name} at c={highest}: {spread(found, 'x')}**, median of {len(found)} round(s) (goal {goal:g}x: "
        f"{'met' if statistics.median(found) >= goal else 'not met'})."
    )
    a, b = find(points, model, top, lowest, 1), find(points, model, bottom, lowest, 1)
    if lowest != highest and a and b and b.rps > 0:
        text += f" At c={lowest}: {a.rps:.0f} against {b.rps:.0f} requests/s, {a.rps / b.rps:.2f}x."
    loads = [p.load for p in points if p.model == model and p.server in (top, bottom)]
    if loads:  # other work on the machine moves both rates, the ceiling most
        text += f" Load during these points: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores."
    return text + "\n"


def report(points: list[Point], subjects: list[Subject], duration: int, runs: int, plotted: bool) -> str:
    lines = [header("Serve benchmark"), ""]
    if text := headline(points):
        lines.append(text)
    lines.append(
        f"Single-row `POST` requests from wrk (closed loop, {duration} s per point, `--timeout 10s`) on 127.0.0.1; "
        f"every server runs {WORKERS} workers on the same machine as wrk. rps counts 2xx answers only; errors are "
        "non-2xx answers and socket errors. `noop` is an `async` API of the same service parsing the same body "
        "and answering a small pydantic model, as /predict does (the HTTP stack's ceiling). `flask` follows the "
        "classic recipe: `model.predict` once per request; `bentoml-mlflow` is BentoML's own MLflow example "
        "(the pyfunc model's `predict` on each adaptive batch). *server CPU ms/request*: CPU time of all the "
        "server's processes during the point over the requests answered (wrk's own CPU not included); "
        "*connections*: established connections held by each server process halfway through the point; "
        "*load*: 1-minute load average at the end of the point (2 cores)."
        + (
            f" {runs} rounds, every server started anew in each: the first measures every concurrency, the "
            "others the highest only."
            if runs > 1
            else ""
        )
        + "\n"
    )
    for subject in subjects:
        lines.append(
            f"- **{subject.name}**: `{subject.model_uri}`, single-row model call {subject.single_row_ms:.2f} ms"
        )
    lines += [
        "",
        "| run | model | server | concurrency | requests/s | p50 ms | p99 ms | errors | server CPU ms/request "
        "| connections | load |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for p in sorted(points, key=lambda p: (p.model, SERVERS.index(p.server), p.concurrency, p.run)):
        lines.append(
            f"| {p.run} | {p.model} | {p.server} | {p.concurrency} | {p.rps:.1f} | {p.p50_ms:.1f} | {p.p99_ms:.1f} "
            f"| {p.errors} | {p.cpu_ms:.2f} | {p.split} | {p.load:.1f} |"
        )
    highest = max((p.concurrency for p in points), default=0)
    lines += ["", f"## Targets at concurrency {highest}", ""]
    if runs > 1:
        lines.append(f"Each ratio is taken within a round; median of the {runs} rounds (lowest-highest).\n")
    lines += ["| target | measured | goal | met |", "|---|---:|---:|---|"]
    for name, model, top, bottom, goal in TARGETS:
        found = ratios(points, model, top, bottom)
        if found:
            met = "yes" if statistics.median(found) >= goal else "no"
            lines.append(f"| {name} | {spread(found, 'x')} | {goal:g}x | {met} |")
    lines.append("")
    if plotted:
        lines += ["![latency and throughput](serve.png)", ""]
    if (
        PROFILE_NOTES.exists()
    ):  # the analysis and the profiles (py-spy) of the served workers, kept across runs
        lines += [PROFILE_NOTES.read_text().rstrip(), ""]
    return "\n".join(lines)


def plot(points: list[Point], path: Path, concurrencies: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({p.model for p in points}, key=["digits", "heavy"].index)
    figure, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
    for column, model in enumerate(models):
        for server in SERVERS:
            series = sorted(
                (p for p in points if p.model == model and p.server == server), key=lambda p: p.concurrency
            )
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
            axis.set_xticks(concurrencies, [str(c) for c in concurrencies])
            axis.set_xlabel("concurrent connections")
            axis.grid(True, alpha=0.3)
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
