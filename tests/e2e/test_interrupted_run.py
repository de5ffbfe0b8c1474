"""An interrupted test run stops every server it started: Ctrl-C (SIGINT to the whole foreground group, as
`timeout -s INT 120 ./noxw -s tests` sends it too) and SIGTERM to nox alone (a CI runner's timeout) leave no
process behind. The run interrupted is a real `./noxw -s tests` holding a MongoDB-protocol server and an MLflow
server with its worker (tests/support/interrupt_probe.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from support.processes import RUN_MARK, alive, spawn, stop, wait_until

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def marked(run_pid: int) -> set[int]:
    """Live processes started by the test run `run_pid` (their environment carries its mark)."""
    mark = f"{RUN_MARK}={run_pid}".encode()
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark in environ.read_bytes().split(b"\0") and alive(int(environ.parent.name)):
                found.add(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(("signum", "to_group"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_an_interrupted_run_leaves_no_server_behind(
    signum: signal.Signals, to_group: bool, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    command = [
        str(PROJECT_ROOT / "noxw"),
        "-s",
        "tests",
        "--",
        "tests/support/interrupt_probe.py",
        "-p",
        "no:cacheprovider",
    ]
    env = {**os.environ, "NBSHIP_PROBE_READY": str(ready)}
    with open(tmp_path / "run.log", "wb") as log:
        run = spawn(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(ready.exists, 300, "the probe's servers", run)
        probe = int(ready.read_text())
        servers = marked(probe)
        assert len(servers) >= 3, servers  # nx-27017, the MLflow server and its worker
        if to_group:
            os.killpg(run.pid, signum)
        else:
            os.kill(run.pid, signum)
        run.wait(timeout=240)
        left = marked(probe)
        assert not left, (
            f"still running after {signum.name}: {left}\n{(tmp_path / 'run.log').read_text()[-3000:]}"
        )
    finally:
        stop(run)
