"""Waiting for a server to come up, for the local stack (`service/stack.py`) and the tests' process helpers."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable


def wait_until(
    ready: Callable[[], bool], timeout_s: float, what: str, process: subprocess.Popen | None = None
) -> None:
    """Poll `ready` (an OSError counts as not yet) until it is true; TimeoutError after `timeout_s`, RuntimeError
    as soon as `process`, the server being waited for, has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")


def http_ok(url: str) -> Callable[[], bool]:
    """A check for `wait_until`: GET `url` answers 200 (anything else raises an OSError)."""

    def check() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    return check
