"""`nox -s stack`: everything on this machine without Docker, in the foreground; Ctrl-C stops what it started.

RabbitMQ (reused if it answers at AMQP_URL, else `rabbitmq-server -detached`), a MongoDB-protocol server
(MONGO_URL if given, else nx-27017 with its data under the project data folder), the MLflow UI, the service
and one job worker. Each child runs in its own process group and is stopped by its PID, newest first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pika
from pika.exceptions import AMQPError

from pipeline.settings import PipelineSettings
from service.job_queue import connection_parameters
from service.job_settings import JobSettings
from service.settings import ServiceSettings


def broker_answers(settings: JobSettings) -> bool:
    try:
        pika.BlockingConnection(connection_parameters(settings)).close()
    except AMQPError:
        return False
    return True


def service_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"stack: {what} did not come up in {timeout_s:.0f} s")
        time.sleep(0.5)


class Stack:
    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._children: list[tuple[str, subprocess.Popen]] = []
        self._stop_broker = False

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with open(self._logs / f"{name}.log", "ab") as log:
            child = subprocess.Popen(
                command,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children.append((name, child))
        print(f"stack: {name} (pid {child.pid}), log {self._logs / f'{name}.log'}")

    def broker(self, settings: JobSettings) -> None:
        if broker_answers(settings):
            print("stack: RabbitMQ already running, reused")
            return
        subprocess.run(["rabbitmq-server", "-detached"], check=True)
        self._stop_broker = True
        wait_for(lambda: broker_answers(settings), "RabbitMQ")

    def watch(self) -> None:
        """Until Ctrl-C or a child exits."""
        while all(child.poll() is None for _, child in self._children):
            time.sleep(0.5)
        for name, child in self._children:
            if child.poll() is not None:
                print(f"stack: {name} exited with {child.returncode}; stopping the rest", file=sys.stderr)

    def stop(self) -> None:
        for _name, child in reversed(self._children):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for _name, child in reversed(self._children):
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        if self._stop_broker:
            subprocess.run(["rabbitmqctl", "stop"], check=False, capture_output=True)


def main() -> int:
    pipeline, jobs = PipelineSettings(), JobSettings()
    logs = pipeline.data_dir / "stack"
    logs.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    env = {"MONGO_URL": jobs.mongo_url}
    stack = Stack(logs)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.broker(jobs)
        if "MONGO_URL" not in os.environ:
            port = str(urlparse(jobs.mongo_url).port or 27017)
            folder = pipeline.data_dir / "nx-27017"
            command = [
                str(Path(python).with_name("nx-27017")), "--host", "127.0.0.1", "--port", port,
                "--data-dir", str(folder / "data"), "--pid-file", str(folder / "nx.pid"),
                "--log-file", str(logs / "nx-27017.log"),
            ]  # fmt: skip
            folder.mkdir(parents=True, exist_ok=True)
            stack.start("nx-27017", command, {})
        stack.start("mlflow-ui", [python, "-m", "pipeline", "ui"], {})
        stack.start("service", [python, "-m", "bentoml", "serve", "service.service:PredictionService"], env)
        # The worker writes its metrics where BentoML's /metrics reads them, once BentoML has cleaned it.
        bentoml_home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
        metrics_dir = {"PROMETHEUS_MULTIPROC_DIR": str(bentoml_home / "prometheus_multiproc_dir")}
        served = ServiceSettings()
        wait_for(lambda: service_answers(f"http://{served.host}:{served.port}/livez"), "the service", 180)
        stack.start("worker", [python, "-m", "service.worker"], env | metrics_dir)
        print("stack: up; Ctrl-C stops it")
        stack.watch()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("stack: stopped")
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
