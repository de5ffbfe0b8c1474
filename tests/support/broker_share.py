"""The machine's RabbitMQ, shared by the test processes of one run (`pytest -n 2`): a test that restarts it holds it
alone, every other test that uses it holds it shared, for its whole protocol (the setup of the module and session
fixtures it is the first to need included).

A readers-writer lock on two files of the run (fcntl): a writer waits at the turnstile, which stops new readers from
slipping past it, so that a worker running one broker test after another cannot starve the other's restart.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RESTARTS_BROKER = "restarts_broker"  # the marker of a test that stops and starts the machine's broker


def _run_id() -> str:
    """One id for every process of a run: pytest-xdist's, else this process's."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())


def _lock_file(kind: str) -> Path:
    return Path(tempfile.gettempdir()) / f"nbship-broker-{_run_id()}.{kind}"


@contextmanager
def _flocked(path: Path, mode: int) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def holding_broker(*, alone: bool) -> Iterator[None]:
    """Hold the machine's broker alone (a test that restarts it) or shared with the other tests that use it."""
    turnstile, broker = _lock_file("turnstile"), _lock_file("lock")
    if alone:
        with open(broker, "a") as handle:
            with _flocked(turnstile, fcntl.LOCK_EX):
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:  # the turnstile is open again; readers now wait for the broker itself
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with _flocked(turnstile, fcntl.LOCK_EX):
        pass
    with _flocked(broker, fcntl.LOCK_SH):
        yield
