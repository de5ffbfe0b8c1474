"""`nox -s stack`: everything on this machine without Docker, in the foreground; Ctrl-C stops what it started.

RabbitMQ (reused if it answers at AMQP_URL, else `rabbitmq-server -detached`), a MongoDB-protocol server
(MONGO_URL if given, else nx-27017 on 127.0.0.1:NX_PORT with its data under the project data folder), the MLflow
UI (UI_PORT), the service (PORT) and one job worker. Each child runs in its own process group, stopped by its
PID, newest first; what is left of a group after its leader exits is killed with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlparse

import pika
from pika.exceptions import AMQPError
from pydantic import Field

from service.jobs.queue import connection_parameters
from service.serving import bentoml_files
from service.settings import JobSettings, ServiceSettings, UiSettings
from service.stack.polling import http_ok, wait_until


class StackSettings(ServiceSettings, UiSettings):
    nx_port: int = Field(
        default=27017, ge=1, le=65535, description="nx-27017's port when MONGO_URL is unset."
    )


def addresses(settings: StackSettings, management: str | None, nx: bool) -> list[tuple[str, str]]:
    """What a person opens or connects to, by name: the stack prints these once it is up."""
    api = f"http://{settings.host}:{settings.port}"
    if settings.is_embedded_store:
        ui = f"http://{settings.ui_host}:{settings.ui_port} (store {settings.tracking_uri})"
    else:
        ui = f"{settings.tracking_uri} (the tracking server's own UI)"
    broker = urlparse(settings.amqp_url)
    found = [
        ("API", api),
        ("OpenAPI page", f"{api}/docs"),
        ("MLflow UI", ui),
        ("RabbitMQ", f"amqp://{broker.hostname}:{broker.port or 5672}{broker.path or '/'}"),
    ]
    if management:
        found.append(("RabbitMQ management", management))
    store = urlparse(settings.mongo_url)
    server = "nx-27017" if nx else "MONGO_URL"
    found.append(("MongoDB protocol", f"mongodb://{store.hostname}:{store.port or 27017} ({server})"))
    return found


def management_url(settings: JobSettings) -> str | None:
    """RabbitMQ's management UI, when its plugin answers on the broker's host (port 15672)."""
    url = f"http://{urlparse(settings.amqp_url).hostname}:15672"
    try:
        return url if http_ok(f"{url}/")() else None
    except OSError:
        return None


def broker_answers(settings: JobSettings) -> bool:
    try:
        pika.BlockingConnection(connection_parameters(settings)).close()
    except AMQPError:
        return False
    return True


def consumers(settings: JobSettings) -> int:
    """Workers consuming the job queue: a worker consumes once its model is loaded and its store reached."""
    try:
        connection = pika.BlockingConnection(connection_parameters(settings))
    except AMQPError:
        return 0
    try:
        return int(connection.channel().queue_declare(settings.job_queue, passive=True).method.consumer_count)
    except AMQPError:  # not declared yet: no worker has started
        return 0
    finally:
        if connection.is_open:
            connection.close()


def readiness(settings: StackSettings) -> dict[str, Callable[[], str | None]]:
    """Each component's check: None once it answers, else what it is waiting for."""
    api = f"http://{settings.host}:{settings.port}/readyz"

    def service() -> str | None:
        try:
            return None if http_ok(api)() else "starting"
        except OSError as exc:  # 503 while the model loads; refused before the server listens
            return f"{api} {getattr(exc, 'code', None) or 'not listening yet'}"

    def worker() -> str | None:
        return None if consumers(settings) else f"no consumer on {settings.job_queue} yet (loading the model)"

    return {"service": service, "worker": worker}


def wait_ready(
    checks: dict[str, Callable[[], str | None]],
    timeout_s: float,
    alive: Callable[[], bool],
    every_s: float = 5,
) -> None:
    """Until every check passes; each component's state is shown every `every_s` while waiting."""
    started = time.monotonic()
    shown = started
    while True:
        waiting = {name: state for name, check in checks.items() if (state := check()) is not None}
        if not waiting:
            return
        now = time.monotonic()
        if not alive():
            raise SystemExit("stack: a component exited while starting; see its log")
        if now - started > timeout_s:
            raise SystemExit(f"stack: not ready after {timeout_s:.0f} s: " + _states(waiting))
        if now - shown >= every_s:
            print(f"stack: waiting ({now - started:.0f} s): " + _states(waiting), flush=True)
            shown = now
        time.sleep(0.5)


def _states(waiting: dict[str, str]) -> str:
    return "; ".join(f"{name}: {state}" for name, state in waiting.items())


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    try:
        wait_until(check, timeout_s, what)
    except TimeoutError:
        raise SystemExit(f"stack: {what} did not come up in {timeout_s:.0f} s") from None


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

    def alive(self) -> bool:
        return all(child.poll() is None for _, child in self._children)

    def watch(self) -> None:
        """Until Ctrl-C or a child exits."""
        while all(child.poll() is None for _, child in self._children):
            time.sleep(0.5)
        for name, child in self._children:
            if child.poll() is not None:
                print(f"stack: {name} exited with {child.returncode}; stopping the rest", file=sys.stderr)

    def stop(self) -> None:
        for _name, child in reversed(self._children):
            _signal_group(child.pid, signal.SIGTERM)
        for _name, child in reversed(self._children):
            with suppress(subprocess.TimeoutExpired):
                child.wait(timeout=20)
            # A leader gone (or stuck) can leave its own children (server workers) behind in its group.
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()
        if self._stop_broker:
            subprocess.run(["rabbitmqctl", "stop"], check=False, capture_output=True)


def main() -> int:
    settings = StackSettings()
    logs = settings.data_dir / "stack"
    logs.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    env: dict[str, str] = {}
    stack = Stack(logs)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.broker(settings)
        if "MONGO_URL" not in os.environ:
            port = str(settings.nx_port)
            env["MONGO_URL"] = f"mongodb://127.0.0.1:{port}"
            folder = settings.data_dir / "nx-27017"
            command = [
                str(Path(python).with_name("nx-27017")), "--host", "127.0.0.1", "--port", port,
                "--data-dir", str(folder / "data"), "--pid-file", str(folder / "nx.pid"),
                "--log-file", str(logs / "nx-27017.log"),
            ]  # fmt: skip
            folder.mkdir(parents=True, exist_ok=True)
            stack.start("nx-27017", command, {})
        if settings.is_embedded_store:  # a tracking server serves its own UI
            stack.start("mlflow-ui", [python, "-m", "pipeline", "ui"], {})
        serve = ["bentoml", "serve", "service.service:PredictionService", "--host", settings.host]
        stack.start("service", [python, "-m", *serve, "--port", str(settings.port)], env)
        wait_for(http_ok(f"http://{settings.host}:{settings.port}/livez"), "the service", 180)
        # The worker writes its metrics where BentoML's /metrics reads them, once BentoML has emptied that folder.
        metrics_dir = {"PROMETHEUS_MULTIPROC_DIR": str(bentoml_files.metrics_dir())}
        stack.start("worker", [python, "-m", "service.jobs.worker"], env | metrics_dir)
        nx = "MONGO_URL" in env
        shown = settings.model_copy(update={"mongo_url": env["MONGO_URL"]}) if nx else settings
        wait_ready(readiness(shown), 300, stack.alive)
        print("stack: up, every component answers; Ctrl-C stops it, as does any one of its processes exiting")
        for name, address in addresses(shown, management_url(settings), nx):
            print(f"stack:   {name + ':':<20} {address}")
        sys.stdout.flush()
        stack.watch()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("stack: stopped")
    return 0


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):  # the group is gone already
        os.killpg(pgid, signum)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
