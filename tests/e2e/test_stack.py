"""`python -m service.stack` (`nox -s stack`) as a person runs it: up, one job through it, Ctrl-C, nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.job_servers import delete_queues, fresh_job_settings, settings_env
from support.processes import alive, descendants, free_port, http_ok, spawn, stop, wait_until

from tests.conftest import PROJECT_ROOT, ChampionStore

pytestmark = pytest.mark.slow


def test_the_stack_runs_a_job_and_ctrl_c_stops_every_process_it_started(
    champion_store: ChampionStore, packaged_champion: str, amqp_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = fresh_job_settings("unused", amqp_url)
    jobs = {key: value for key, value in settings_env(settings).items() if key != "MONGO_URL"}
    ui_port, nx_port = free_port(), free_port()
    env = champion_store.env(**jobs, PORT=str(port), UI_PORT=str(ui_port), NX_PORT=str(nx_port))
    env.pop("MONGO_URL", None)  # the stack starts its own nx-27017
    with open(tmp_path / "stack.log", "wb") as log:
        stack = spawn(
            [sys.executable, "-m", "service.stack"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    started: set[int] = set()
    try:
        url = f"http://127.0.0.1:{port}"
        up = lambda: b"stack: up" in (tmp_path / "stack.log").read_bytes()  # noqa: E731
        wait_until(up, 300, "the stack's `up`", stack)
        # Up means every component answers: the API is ready and the worker consumes (it logged its start line).
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        worker_log = env.get("DATA_DIR", "") + "/stack/worker.log"
        assert "worker up:" in Path(worker_log).read_text()
        with httpx.Client(base_url=url, timeout=30) as client:
            job = client.post("/jobs", json={"instances": champion_store.rows[:2].tolist()})
            assert job.status_code == 202, job.text
            wait_until(lambda: client.get(job.json()["url"]).json()["status"] == "succeeded", 60, "the job")
        # It says where everything is, credentials left out.
        printed = (tmp_path / "stack.log").read_text()
        ui = f"http://127.0.0.1:{ui_port}"
        for name, address in [("API", url), ("OpenAPI page", f"{url}/docs"), ("MLflow UI", ui)]:
            assert any(
                line.startswith(f"stack:   {name}:") and address in line for line in printed.splitlines()
            )
        assert f"mongodb://127.0.0.1:{nx_port} (nx-27017)" in printed
        assert "stack:   RabbitMQ:" in printed and "guest" not in printed
        for address in (f"{url}/docs", ui):
            wait_until(http_ok(address), 120, address, stack)
        started = descendants(stack.pid)
        names = {Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in started}
        for part in (b"nx-27017", b"mlflow server", b"bentoml serve", b"service.jobs.worker"):
            assert any(part in name for name in names), (part, names)

        os.kill(stack.pid, signal.SIGINT)
        assert stack.wait(timeout=120) == 0
        left = {pid for pid in started if alive(pid)}
        assert not left, f"still running after Ctrl-C: {left}"
        assert b"stack: stopped" in (tmp_path / "stack.log").read_bytes()
    finally:
        stop(stack)
        for pid in started:  # only after a failure: what the stack left behind, by PID
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        delete_queues(settings)
