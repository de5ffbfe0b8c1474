"""Servers started as real processes on 127.0.0.1 for tests and benchmarks, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from service.stack.polling import http_ok, wait_until

__all__ = ["alive", "descendants", "free_port", "http_ok", "running", "stop", "wait_until"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, timeout_s: float = 15) -> None:
    """SIGTERM the process group by PID, then SIGKILL what is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass


@contextmanager
def running(
    command: Sequence[str], ready: Callable[[], bool], what: str, log: Path, timeout_s: float = 120, **popen
) -> Iterator[subprocess.Popen]:
    """Start `command` in its own process group, wait for `ready`, stop it on exit. Output goes to `log`."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
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
