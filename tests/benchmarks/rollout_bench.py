"""`./noxw -s bench -- rollout`: a new @champion rolled out under load, with every process following the alias.

A tmp store holds version 1 (packaged, served) and version 2 of the digits model. The service runs 2 workers and
2 job workers, all with FOLLOW_ALIAS=champion at the default interval. wrk sends single-row /predict requests at
concurrency 64 for a steady phase, then for a switch phase during which the alias moves to version 2, while a
client submits a job every 50 ms and a probe sends single requests on fresh connections. Reported: non-2xx
answers and failed jobs (targets 0), p99 during the switch against steady (target at most 2x), seconds from the
alias move to the first and the last API and job worker answering with version 2 (target under 10 s), and the
memory peak of the workers during the switch against their steady state. Written to docs/benchmarks/rollout.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import DOCS, ROOT, header
from serve_bench import server_env, wrk
from support.job_servers import delete_queues, ensure_broker, fresh_job_settings, nx_server, settings_env
from support.processes import free_port, http_ok, running, wait_until

from pipeline import registry

TARGET_P99_RATIO = 2.0
TARGET_SWITCH_S = 10.0
MODEL = "rollout-digits"


@dataclass
class Probe:
    """Single requests on fresh connections and a job every 50 ms: when each version answered."""

    url: str
    row: list[float]
    answers: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, version)
    jobs: list[tuple[float, str]] = field(default_factory=list)  # (submitted at, job url)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            with httpx.Client(base_url=self.url, timeout=30) as client:  # a new connection: any API worker
                answer = client.post("/predict", json={"instances": [self.row]})
                if answer.status_code == 200:
                    self.answers.append((time.monotonic(), answer.json()["model"]["version"]))
                job = client.post("/jobs", json={"instances": [self.row]})
                if job.status_code == 202:
                    self.jobs.append((time.monotonic(), job.json()["url"]))
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench rollout")
    parser.add_argument("--duration", type=int, default=15, help="seconds of each wrk phase")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install -y wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="nbship-rollout-") as tmp:
        work = Path(tmp)
        env = server_env(
            {"DATA_DIR": str(work / "store"), "MODEL_NAME": MODEL, "BENTOML_HOME": str(work / "bentoml")}
        )
        row = prepare(env)
        figures = measure(env, row, work, args.duration)
    report = render(figures, args.duration)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "rollout.md").write_text(report)
    print(report)
    return 0


def prepare(env: dict[str, str]) -> list[float]:
    """Versions 1 and 2 registered (two trainings of the digits notebook, 3 epochs, other seeds), version 1 the
    champion, packaged. Returns a row to probe with."""
    train = [sys.executable, "-m", "pipeline", "train", "--no-progress", "-p", "epochs", "3"]
    for seed in ("1", "2"):
        subprocess.run([*train, "-p", "seed", seed], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    promote = [sys.executable, "-m", "pipeline", "promote", "1", "--force"]
    subprocess.run(promote, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        [sys.executable, "-m", "pipeline", "package"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    from sklearn.datasets import load_digits

    return [float(value) for value in load_digits().data[0]]


def connect(env: dict[str, str]):
    """A registry client on the benchmark's store, as `python -m pipeline promote` makes one."""
    from pipeline import tracking
    from pipeline.settings import PipelineSettings

    return tracking.connect(PipelineSettings(data_dir=Path(env["DATA_DIR"]), model_name=MODEL))


def rss_mb(pids: list[int]) -> dict[int, float]:
    import psutil

    sizes = {}
    for pid in pids:
        try:
            sizes[pid] = psutil.Process(pid).memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return sizes


def measure(env: dict[str, str], row: list[float], work: Path, duration: int) -> dict[str, object]:
    import psutil

    broker = ensure_broker()
    nx_port, port = free_port(), free_port()
    settings = fresh_job_settings(f"mongodb://127.0.0.1:{nx_port}", broker, batch_wait_ms=5)
    env = env | settings_env(settings) | {"FOLLOW_ALIAS": "champion", "WORKERS": "2"}
    url = f"http://127.0.0.1:{port}"
    serve = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "service.service:PredictionService",
        "--port",
        str(port),
    ]
    worker = [sys.executable, "-m", "service.jobs.worker"]
    # The workers' samples go where the service's /metrics reads them (its BentoML home's, not this process's).
    metrics_dir = {"PROMETHEUS_MULTIPROC_DIR": str(Path(env["BENTOML_HOME"]) / "prometheus_multiproc_dir")}
    body = '{"instances": [[' + ", ".join(str(v) for v in row) + "]]}"
    with ExitStack() as stack:
        stack.enter_context(nx_server(work / "nx", nx_port))
        service = stack.enter_context(
            running(serve, http_ok(f"{url}/readyz"), "service", work / "service.log", 180, env=env, cwd=ROOT)
        )
        workers = [
            stack.enter_context(
                running(
                    worker,
                    lambda: True,
                    f"worker {i}",
                    work / f"worker{i}.log",
                    env=env | metrics_dir,
                    cwd=ROOT,
                )
            )
            for i in range(2)
        ]
        client = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        first = client.post("/jobs", json={"instances": [row]}).json()["url"]
        try:
            wait_until(lambda: client.get(first).json()["status"] == "succeeded", 120, "the job workers up")
        except TimeoutError:
            print((work / "worker0.log").read_text()[-3000:], file=sys.stderr)
            raise
        wrk(f"{url}/predict", body, 8, 3, work, "", "")  # warm-up, not measured
        api_pids = [child.pid for child in psutil.Process(service.pid).children(recursive=True)]
        pids = api_pids + [w.pid for w in workers]
        steady_rss: dict[int, float] = {}
        switch_rss: dict[int, float] = {}
        sampling = {"peak": steady_rss}
        stop_sampling = threading.Event()

        def sample() -> None:
            while not stop_sampling.wait(0.2):
                for pid, size in rss_mb(pids).items():
                    peak = sampling["peak"]
                    peak[pid] = max(peak.get(pid, 0.0), size)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        steady = wrk(f"{url}/predict", body, 64, duration, work, "steady", "")
        probe = Probe(url, row)
        prober = threading.Thread(target=probe.run, daemon=True)
        prober.start()
        moved: dict[str, float] = {}
        registry_client = connect(env)

        def move_alias() -> None:
            time.sleep(3)
            sampling["peak"] = switch_rss
            moved["at"] = time.monotonic()
            registry.move_alias(registry_client, MODEL, "champion", "2", action="promote")
            moved["done"] = time.monotonic()

        mover = threading.Thread(target=move_alias, daemon=True)
        mover.start()
        switch = wrk(f"{url}/predict", body, 64, duration, work, "switch", "")
        mover.join()
        time.sleep(2)
        probe.stop.set()
        prober.join()
        stop_sampling.set()
        sampler.join()
        jobs = [(at, client.get(job).json()) for at, job in probe.jobs]
        wait_until(
            lambda: all(
                client.get(job).json()["status"] in ("succeeded", "failed") for _, job in probe.jobs[-20:]
            ),
            60,
            "the last jobs",
        )
        jobs = [(at, client.get(job).json()) for at, job in probe.jobs]
    delete_queues(settings)
    alias_moved = moved["at"]  # the alias is the move's first write
    api_v2 = [at for at, version in probe.answers if version == "2"]
    api_v1_after = [at for at, version in probe.answers if version == "1" and at > alias_moved]
    job_v2 = [at for at, view in jobs if view.get("model", {}).get("version") == "2"]
    job_v1_after = [
        at for at, view in jobs if view.get("model", {}).get("version") == "1" and at > alias_moved
    ]
    return {
        "steady": steady,
        "switch": switch,
        "failed_jobs": sum(view["status"] != "succeeded" for _, view in jobs),
        "jobs": len(jobs),
        "api_first_s": min(api_v2) - alias_moved if api_v2 else None,
        "api_last_s": max(api_v1_after, default=min(api_v2, default=alias_moved)) - alias_moved,
        "job_first_s": min(job_v2) - alias_moved if job_v2 else None,
        "job_last_s": max(job_v1_after, default=min(job_v2, default=alias_moved)) - alias_moved,
        "promote_s": moved["done"] - moved["at"],
        "rss": {pid: (steady_rss.get(pid, 0.0), switch_rss.get(pid, 0.0)) for pid in pids},
        "api_pids": api_pids,
    }


def render(f: dict[str, object], duration: int) -> str:
    steady, switch = f["steady"], f["switch"]
    p99_ratio = switch.p99_ms / steady.p99_ms  # type: ignore[attr-defined]
    non_2xx = switch.errors + steady.errors  # type: ignore[attr-defined]
    rows = []
    for pid, (before, during) in f["rss"].items():  # type: ignore[attr-defined]
        kind = "API worker" if pid in f["api_pids"] else "job worker"  # type: ignore[operator]
        rows.append(f"| {kind} (pid {pid}) | {before:.0f} | {during:.0f} | {during / before:.2f}x |")

    def seconds(value: object) -> str:
        return "not seen" if value is None else f"{value:.1f}"

    def verdict(ok: bool) -> str:
        return "meets" if ok else "misses"

    # Every worker has switched once both its first new answer and its last old one are seen.
    seen = [
        f[key] for key in ("api_first_s", "api_last_s", "job_first_s", "job_last_s") if f[key] is not None
    ]
    last = max(seen)  # type: ignore[type-var]
    return "\n".join(
        [
            header("Rollout benchmark"),
            f"Service with 2 API workers and 2 job workers, all following `@champion` (FOLLOW_INTERVAL_S default); wrk "
            f"at concurrency 64 on single-row `/predict`, {duration} s steady, then {duration} s during which "
            "the alias moves to version 2 (3 s in, as `python -m pipeline promote 2` does); meanwhile a probe sends a request on a fresh "
            f"connection and a job every 50 ms ({f['jobs']} jobs).\n",
            "| phase | rps | p50 (ms) | p99 (ms) | non-2xx and socket errors |",
            "| --- | --- | --- | --- | --- |",
            f"| steady | {steady.rps:.0f} | {steady.p50_ms:.1f} | {steady.p99_ms:.1f} | {steady.errors} |",  # type: ignore[attr-defined]
            f"| switch | {switch.rps:.0f} | {switch.p50_ms:.1f} | {switch.p99_ms:.1f} | {switch.errors} |",  # type: ignore[attr-defined]
            "",
            "| target | measured | goal | |",
            "| --- | --- | --- | --- |",
            f"| non-2xx answers | {non_2xx} | 0 | {verdict(non_2xx == 0)} |",
            f"| failed jobs | {f['failed_jobs']} | 0 | {verdict(f['failed_jobs'] == 0)} |",
            f"| p99 during the switch / steady | {p99_ratio:.2f}x | at most {TARGET_P99_RATIO}x | "
            f"{verdict(p99_ratio <= TARGET_P99_RATIO)} |",
            f"| alias moved -> first API answer by version 2 | {seconds(f['api_first_s'])} s | | |",
            f"| alias moved -> last API answer by version 1 | {seconds(f['api_last_s'])} s | | |",
            f"| alias moved -> first job answered by version 2 | {seconds(f['job_first_s'])} s | | |",
            f"| alias moved -> last job answered by version 1 | {seconds(f['job_last_s'])} s | | |",
            f"| alias moved -> every worker on version 2 | {last:.1f} s | under {TARGET_SWITCH_S:.0f} s | "
            f"{verdict(last < TARGET_SWITCH_S)} |",
            "",
            f"Moving the alias (with its audit tags) took {f['promote_s']:.2f} s.",
            "",
            "Memory (RSS, MB) of each process: peak in the steady phase, peak from the alias move on:",
            "",
            "| process | steady | switch | ratio |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
