"""Servers started as real processes on 127.0.0.1 for tests and benchmarks, stopped by PID.

Every server goes through `spawn`: a process group of its own, remembered until it is stopped, and marked in its
environment with the PID of the run that started it. `stop_all` stops what a run still holds when it ends, also
when it is interrupted (SIGINT, or SIGTERM, which tests/conftest.py turns into an interrupt); `stop_orphans`
stops what a run that was killed outright (SIGKILL) left behind, when the next run starts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from service.stack.polling import http_ok, wait_until

__all__ = ["alive", "descendants", "free_port", "http_ok", "running", "spawn", "stop", "wait_until"]

RUN_MARK = "NBSHIP_TEST_RUN_PID"  # in each server's environment: the PID of the test run that started it
_STARTED: dict[int, subprocess.Popen[Any]] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(command: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """Start a server in its own process group, marked as this run's and remembered until `stop`."""
    env = {**(popen.pop("env", None) or os.environ), RUN_MARK: str(os.getpid())}
    process = subprocess.Popen(command, start_new_session=True, env=env, **popen)
    _STARTED[process.pid] = process
    return process


def stop(process: subprocess.Popen[Any], timeout_s: float = 15) -> None:
    """SIGTERM the process group by PID, then SIGKILL what is left."""
    _STARTED.pop(process.pid, None)
    if process.poll() is not None:
        _signal_group(
            process.pid, signal.SIGKILL
        )  # the leader is gone: whatever it left in its group goes too
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass
    _signal_group(process.pid, signal.SIGKILL)


def stop_all() -> None:
    """Stop every server this run started and did not stop yet, newest first."""
    for process in reversed(list(_STARTED.values())):
        stop(process, timeout_s=10)


def stop_orphans() -> list[int]:
    """Kill the process groups of servers whose test run is gone (it was killed before it could stop them);
    returns their PIDs."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            marks = [v for v in environ.read_bytes().split(b"\0") if v.startswith(RUN_MARK.encode() + b"=")]
        except OSError:  # exited while listed, or not ours to read
            continue
        if marks and not alive(int(marks[0].split(b"=", 1)[1])):
            pid = int(environ.parent.name)
            found.append(pid)
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return found


@contextmanager
def running(
    command: Sequence[str],
    ready: Callable[[], bool],
    what: str,
    log: Path,
    timeout_s: float = 120,
    **popen: Any,
) -> Iterator[subprocess.Popen[Any]]:
    """Start `command` in its own process group, wait for `ready`, stop it on exit. Output goes to `log`."""
    with open(log, "ab") as out:
        process = spawn(command, stdout=out, stderr=subprocess.STDOUT, **popen)
    try:
        wait_until(ready, timeout_s, what, process)
        yield process
    finally:
        stop(process)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, whatever session or group it moved to (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while listed
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.update(children)
        todo.extend(children)
    return {child for child in found if alive(child)}


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent (or an init that never reaps) to collect it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
