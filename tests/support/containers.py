"""Containers of the project's image for tests, run with podman on the host network (the servers they use listen
on 127.0.0.1), each stopped by name and checked gone by its PID."""

from __future__ import annotations

import resource
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from support.processes import alive, wait_until

# runc (crun cannot set these ulimits here) with explicit ulimits: a container may not raise them above the host's.
_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
RUN_OPTIONS = [
    "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--network", "host",
    "--ulimit", f"nofile={_NOFILE}:{_NOFILE}", "--ulimit", "nproc=4096:4096",
]  # fmt: skip


@dataclass(frozen=True)
class Container:
    name: str
    pid: int  # the container's main process, as the host sees it

    def logs(self) -> str:
        done = subprocess.run(["podman", "logs", self.name], capture_output=True, text=True)
        return (done.stdout + done.stderr)[-4000:]

    def exec(self, *command: str) -> str:
        return subprocess.run(
            ["podman", "exec", self.name, *command], capture_output=True, text=True, check=True
        ).stdout


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def running_container(
    image: str, env: dict[str, str], command: tuple[str, ...] = (), *, read_only: bool = True
) -> Iterator[Container]:
    """`podman run -d IMAGE COMMAND` with `env`, by default on a read-only root with a writable /tmp (as compose
    and Kubernetes run it); stopped (SIGTERM, 10 s, then SIGKILL) and removed afterwards."""
    name = f"nbship-test-{uuid.uuid4().hex[:10]}"
    environment = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    root = ["--read-only", "--tmpfs", "/tmp", "--env", "BENTOML_HOME=/tmp/bentoml"] if read_only else []
    podman("run", "--detach", "--name", name, *RUN_OPTIONS, *root, *environment, image, *command)
    container = Container(name, int(podman("inspect", "--format", "{{.State.Pid}}", name)))
    try:
        yield container
    finally:
        subprocess.run(["podman", "stop", "--time", "10", name], capture_output=True)
        subprocess.run(["podman", "rm", "--force", name], capture_output=True)
        wait_until(lambda: not alive(container.pid), 15, f"container {name} (PID {container.pid}) gone")
