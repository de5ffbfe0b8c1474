"""Serving the packaged champion for real: requests over HTTP on 127.0.0.1, and the bad inputs they must refuse."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from support.processes import spawn, stop

READY_TIMEOUT_S = 180

# (name, raw JSON body, what the error message must say, status): 422 for rows that break the rules, 400 for a body
# that is not JSON; never a 500.
BAD_BODIES: list[tuple[str, bytes, str, int]] = [
    ("wrong shape", b'{"instances": [[1, 2, 3]]}', "row 0: has 3 values, the model takes 64", 422),
    (
        "string",
        b'{"instances": [[' + b"0, " * 10 + b'"x"' + b", 0" * 53 + b"]]}",
        "row 0, field 10: expected a number",
        422,
    ),
    ("NaN", b'{"instances": [[NaN' + b", 0" * 63 + b"]]}", "row 0, field 0: nan is not a finite number", 422),
    (
        "infinity",
        b'{"instances": [[0' + b", 0" * 62 + b", Infinity]]}",
        "row 0, field 63: inf is not a finite number",
        422,
    ),
    ("empty list", b'{"instances": []}', "no rows: send at least one row", 422),
    (
        "too many rows",
        b'{"instances": [' + b",".join([b"[" + b"0," * 63 + b"0]"] * 65) + b"]}",
        "65 rows; at most 64",
        422,
    ),
    ("malformed JSON", b'{"instances": [[1, 2', "the body is not valid JSON", 400),
    ("no instances", b'{"rows": [[1]]}', "unknown key 'rows'; send one of instances, inputs", 422),
    (
        "a boolean",
        b'{"instances": [[true' + b", 0" * 63 + b"]]}",
        "row 0, field 0: expected a number, got a boolean",
        422,
    ),
    ("an extra key", b'{"instances": [[0' + b", 0" * 63 + b']], "x": 1}', "unknown key 'x'", 422),
    ("two formats", b'{"instances": [], "inputs": []}', "send the rows under exactly one of", 422),
    ("not an object", b"[[0, 1]]", "expected a JSON object with one of instances", 422),
    ("named rows without names", b'{"dataframe_records": [{"a": 1}]}', "needs named features", 422),
]
# The same rows under another Content-Type: refused before they are read (415), on every route that takes rows.
BAD_CONTENT_TYPES = ["text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {READY_TIMEOUT_S} s")


@contextmanager
def serving(command: list[str], port: int, env: dict[str, str], cwd: str) -> Iterator[str]:
    """Start a server process on 127.0.0.1:port, yield its URL, stop it by its PID (its own process group)."""
    process = spawn(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url
    except Exception:
        if process.poll() is not None and process.stderr is not None:
            raise RuntimeError(process.stderr.read().decode(errors="replace")[-4000:]) from None
        raise
    finally:
        stop(process, timeout_s=30)
