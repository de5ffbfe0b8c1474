"""docker/compose.yaml run for real with podman-compose, as the compose section of docs/containers.md says, in a project of the
test's own: a copy of docker/ whose `.env` is filled in as docs/containers.md says, the registry images replaced by the
stand-ins of docker/standins (docker/compose.test.yaml), host ports of its own on 127.0.0.1, and healthchecks run on
a timer, since podman 4.3 runs them with systemd timers and these machines have no systemd.

Every container, pod, volume and network it makes carries the project's name (label io.podman.compose.project)
and is removed by it, at the end or, for a run that was killed, by the next run (`remove_stale_projects`).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.processes import alive, free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
PODMAN_COMPOSE = str(Path(sys.executable).with_name("podman-compose"))
PROJECT_PREFIX = "nbship-e2e-"  # + the PID of the pytest process that owns it
PROJECT_LABEL = "io.podman.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
HEALTH_INTERVAL_S = 3.0
FILES = ("compose.yaml", "compose.override.yaml", "compose.test.yaml", ".env.example")
PORTS = ("API_PORT", "MLFLOW_PORT", "MONGO_PORT", "RABBITMQ_UI_PORT")


def podman(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def containers_conf(folder: Path) -> Path:
    """What podman needs here and a machine with systemd and a large open-files limit does not: runc, cgroupfs
    and ulimits within the host's hard limits (podman's default nofile, 1048576, is above them). docs/containers.md says so."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    path = folder / "containers.conf"
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
    )
    return path


def standin_images() -> dict[str, str]:
    """docker/standins/build.sh: builds what is missing (minutes, once per machine), prints the variables."""
    done = subprocess.run(
        [str(DOCKER / "standins" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PATH": f"{ROOT / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker/standins/build.sh failed:\n{done.stderr[-4000:]}")
    return dict(line.split("=", 1) for line in done.stdout.split())


@dataclass
class HealthTicker:
    """Runs each healthcheck of the project's running containers every few seconds, as podman's systemd timers
    would, and remembers when each container (by ID) first passed."""

    project: str
    env: dict[str, str]
    healthy_at: dict[str, float] = field(default_factory=dict)  # container ID -> monotonic time
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="healthchecks", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(HEALTH_INTERVAL_S):
            for container in running(self.project):
                if container["Id"] in self.healthy_at or not has_healthcheck(container["Id"]):
                    continue
                check = subprocess.run(
                    ["podman", "healthcheck", "run", container["Id"]], capture_output=True, env=self.env
                )
                if check.returncode == 0:
                    self.healthy_at[container["Id"]] = time.monotonic()


def running(project: str) -> list[dict]:
    listed = podman("ps", "--filter", f"label={PROJECT_LABEL}={project}", "--format", "json", check=False)
    return json.loads(listed or "[]")


def has_healthcheck(container_id: str) -> bool:
    test = podman("inspect", "--format", "{{json .Config.Healthcheck}}", container_id, check=False)
    return test not in ("", "null")


@dataclass
class ComposeProject:
    name: str
    folder: Path  # the copy of docker/, with its .env
    env: dict[str, str]  # of every command run in it
    health: HealthTicker

    @property
    def ports(self) -> dict[str, int]:
        return {name: int(self.env[name]) for name in PORTS}

    def readme(self, line: str, timeout: float = 900) -> str:
        """Run a line of the compose section of docs/containers.md, as podman here needs it (`podman_line`); its output."""
        done = subprocess.run(
            ["bash", "-c", podman_line(line, self.ports["MLFLOW_PORT"])],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{line!r} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}"
            )
        return done.stdout

    def containers(self, service: str) -> list[dict]:
        return [c for c in running(self.name) if c["Labels"].get(SERVICE_LABEL) == service]

    def container(self, service: str) -> str:
        (found,) = self.containers(service)
        return str(found["Names"][0])

    def wait_healthy(self, services: dict[str, int], timeout_s: float = 600) -> dict[str, float]:
        """Until each service has that many running containers, all healthy; when each service got there."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = {}
            for service, count in services.items():
                ids = [c["Id"] for c in self.containers(service)]
                if len(ids) == count and all(i in self.health.healthy_at for i in ids):
                    ready[service] = max(self.health.healthy_at[i] for i in ids)
            if len(ready) == len(services):
                return ready
            time.sleep(1)
        states = {name: [c["Status"] for c in self.containers(name)] for name in services}
        raise AssertionError(f"not healthy after {timeout_s:.0f} s: {states}\n{self.logs(*services)}")

    def published(self, service: str) -> list[str]:
        """`podman port` of the service's container: host address:port of each published port."""
        return podman("port", self.container(service), check=False).splitlines()

    def logs(self, *services: str) -> str:
        tails = []
        for service in services:
            for c in self.containers(service):
                log = subprocess.run(
                    ["podman", "logs", "--tail", "30", c["Id"]], capture_output=True, text=True
                )
                tails.append(f"--- {c['Names'][0]}\n{(log.stdout + log.stderr)[-3000:]}")
        return "\n".join(tails)


def podman_line(line: str, mlflow_port: int) -> str:
    """A line of docs/containers.md for this machine: `docker compose` is podman-compose, the production file runs with the
    stand-ins, `../noxw` is the checkout's (the project folder is a copy of docker/), MLflow is on the test's port."""
    line = line.replace(
        "docker compose -f compose.yaml", "docker compose -f compose.yaml -f compose.test.yaml"
    )
    line = line.replace("docker compose", PODMAN_COMPOSE).replace("../noxw", str(ROOT / "noxw"))
    line = re.sub(r"\bpython -m pipeline\b", f"{sys.executable} -m pipeline", line)
    return line.replace("127.0.0.1:5000", f"127.0.0.1:{mlflow_port}")


def fill_env(folder: Path, secrets: dict[str, str], settings: dict[str, str]) -> None:
    """`cp .env.example .env`, then fill in the required values and set the optional ones, as a person does."""
    shutil.copy(folder / ".env.example", folder / ".env")
    text = (folder / ".env").read_text()
    for name, value in secrets.items():
        text, found = re.subn(rf"^{name}=$", f"{name}={value}", text, flags=re.MULTILINE)
        assert found == 1, f"{name} is not a required value of docker/.env.example"
    (folder / ".env").write_text(text + "".join(f"{name}={value}\n" for name, value in settings.items()))


def set_env_value(folder: Path, name: str, value: str) -> None:
    with (folder / ".env").open("a") as env:
        env.write(f"{name}={value}\n")


@contextmanager
def compose_project(
    folder: Path, secrets: dict[str, str], images: dict[str, str]
) -> Iterator[ComposeProject]:
    """A copy of docker/ in `folder` with a filled-in .env; all it made is removed on the way out."""
    remove_stale_projects()
    name = f"{PROJECT_PREFIX}{os.getpid()}"
    for file in FILES:
        shutil.copy(DOCKER / file, folder / file)
    ports = {port: str(free_port()) for port in PORTS}
    fill_env(folder, secrets, {**ports, "API_HOST_IP": "127.0.0.1"})
    env = {
        **os.environ,
        **images,
        "CONTAINERS_CONF": str(containers_conf(folder)),
        "COMPOSE_PROJECT_NAME": name,
        "COMPOSE_FILE": "compose.yaml:compose.override.yaml:compose.test.yaml",
        "PODMAN_COMPOSE_WARNING_LOGS": "false",
        **ports,  # for the test's own reading; compose reads them from .env
    }
    health = HealthTicker(name, env)
    health.start()
    # A run stopped by SIGTERM (CI's time limit, kill) unwinds as Ctrl-C does, through the clean-up below.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield ComposeProject(name, folder, env, health)
    finally:
        signal.signal(signal.SIGTERM, previous)
        health.stop()
        remove_project(name)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def remove_project(name: str) -> None:
    """Everything of a project, without the graceful stops of `down` (the worker's alone may take 60 s): its pod
    with its containers, any container outside it, its volumes and its network."""
    label = f"label={PROJECT_LABEL}={name}"
    podman("pod", "rm", "--force", "--time", "2", f"pod_{name}", check=False)
    for container in podman("ps", "-aq", "--filter", label, check=False).split():
        podman("rm", "--force", "--time", "2", container, check=False)
    for volume in podman("volume", "ls", "-q", "--filter", label, check=False).split():
        podman("volume", "rm", "--force", volume, check=False)
    podman("network", "rm", "--force", f"{name}_default", check=False)


def remove_stale_projects() -> None:
    """Projects of test runs that are gone (killed before their clean-up), by the PID in their name."""
    listed = podman("ps", "-a", "--format", '{{index .Labels "' + PROJECT_LABEL + '"}}', check=False)
    volumes = podman("volume", "ls", "--format", "{{.Name}}", check=False)
    names = {n for n in listed.split() if n.startswith(PROJECT_PREFIX)}
    names |= {v.split("_", 1)[0] for v in volumes.split() if v.startswith(PROJECT_PREFIX)}
    for name in names:
        pid = name.removeprefix(PROJECT_PREFIX)
        if not (pid.isdigit() and alive(int(pid))):
            remove_project(name)
