"""`./noxw -s bench -- coldstart [--image IMAGE ...]`: how long a new container of the image takes to be of use.

For each image (default: the one `./noxw -s container` tags `nbship:latest`; give several to compare them in one
run, rounds interleaved) and each round: `podman run` of the API, timed to its first `/readyz` 200; then, with a
job already submitted through that API and waiting in the queue, `podman run` of a job worker from the same image,
timed to the job leaving `queued` (the worker has claimed it). This is what a scale-out (KEDA, HPA) waits for.
Both run as compose and Kubernetes run them (read-only root, writable /tmp) against the host's RabbitMQ and an
nx-27017 server of the benchmark's own. Reported: median of the rounds and their spread, and the image's size.
Written to docs/benchmarks/coldstart.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import DOCS, header
from support.containers import podman, running_container
from support.job_servers import delete_queues, ensure_broker, fresh_job_settings, nx_server, settings_env
from support.processes import free_port

POLL_S = 0.05
TIMEOUT_S = 180
TARGET_S = 10.0
ROW = [0.0] * 64  # one row of the digits model the bundled notebook trains


@dataclass
class Starts:
    image: str
    size_bytes: int
    api_s: list[float] = field(default_factory=list)
    worker_s: list[float] = field(default_factory=list)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench coldstart")
    parser.add_argument("--image", action="append", help="image to start (repeatable; default nbship:latest)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if shutil.which("podman") is None:
        print("podman is needed: apt-get install -y podman runc", file=sys.stderr)
        return 2
    images = args.image or ["nbship:latest"]
    starts = [
        Starts(image, int(podman("image", "inspect", "--format", "{{.Size}}", image))) for image in images
    ]
    amqp_url = ensure_broker()
    with (
        tempfile.TemporaryDirectory(prefix="nbship-coldstart-") as tmp,
        nx_server(Path(tmp), free_port()) as mongo,
    ):
        for round_ in range(args.rounds):
            for subject in starts:
                api_s, worker_s = one_round(subject.image, mongo, amqp_url)
                subject.api_s.append(api_s)
                subject.worker_s.append(worker_s)
                print(
                    f"round {round_ + 1} {subject.image}: API {api_s:.1f} s, worker {worker_s:.1f} s",
                    flush=True,
                )
    report = render(starts, args.rounds)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "coldstart.md").write_text(report)
    print(report)
    return 0


def one_round(image: str, mongo_url: str, amqp_url: str) -> tuple[float, float]:
    """Seconds from `podman run` to the API's first /readyz 200, and to a waiting job claimed by a new worker."""
    settings = fresh_job_settings(mongo_url, amqp_url)
    env = {key: value for key, value in settings_env(settings).items() if key != "WORKER_PREDICTOR"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        with running_container(image, {**env, "HOST": "127.0.0.1", "PORT": str(port)}) as api:
            api_s = seconds_until(
                started, lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, api.logs
            )
            with httpx.Client(base_url=url, timeout=30) as client:
                submitted = client.post("/jobs", json={"instances": [ROW]})
                assert submitted.status_code == 202, submitted.text
                job_url = submitted.json()["url"]

                def taken() -> bool:
                    return client.get(job_url).json()["status"] != "queued"

                started = time.monotonic()
                with running_container(image, env, ("python", "-m", "service.jobs.worker")) as worker:
                    worker_s = seconds_until(started, taken, worker.logs)
    finally:
        delete_queues(settings)
    return api_s, worker_s


def seconds_until(started: float, ready: Callable[[], bool], logs: Callable[[], str]) -> float:
    while time.monotonic() - started < TIMEOUT_S:
        try:
            if ready():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"not ready after {TIMEOUT_S} s:\n{logs()}")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f})"


def render(starts: list[Starts], rounds: int) -> str:
    lines = [
        header("Cold start of the image", "./noxw -s bench -- coldstart"),
        f"Each image started {rounds} times, rounds interleaved; median (min-max). API: `podman run` to the first "
        "`/readyz` 200. Worker: `podman run` of `python -m service.jobs.worker` to its claim of a job waiting in "
        "the queue. Read-only root with a writable /tmp, host network, the host's RabbitMQ, nx-27017.\n",
        "| image | size | API ready | worker's first job |",
        "| --- | --- | --- | --- |",
    ]
    for subject in starts:
        size = f"{subject.size_bytes / 1e9:.2f} GB"
        lines.append(f"| `{subject.image}` | {size} | {spread(subject.api_s)} | {spread(subject.worker_s)} |")
    lines.append(f"\nTarget: each under {TARGET_S:.0f} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
