"""The service served for real by `bentoml serve`, as a process on 127.0.0.1 stopped by its PID."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.processes import http_ok, running

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).with_name("bentoml"))
SERVICE = "service.service:PredictionService"


@contextmanager
def served_service(port: int, env: dict[str, str], log: Path, timeout_s: float = 180) -> Iterator[str]:
    """`bentoml serve service.service:PredictionService` with the settings in `env`; yields its URL once ready."""
    url = f"http://127.0.0.1:{port}"
    command = [BENTOML, "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    with running(command, http_ok(f"{url}/readyz"), "the service", log, timeout_s, env=env, cwd=PROJECT_ROOT):
        yield url
