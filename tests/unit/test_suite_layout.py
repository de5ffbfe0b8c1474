"""How a test run is laid out (docs/testing.md): the machine's RabbitMQ held shared or alone across the run's test
processes, and the files that share a served service scheduled into one process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from support.broker_share import holding_broker

from tests.conftest import SHARING_A_SERVER

ROOT = Path(__file__).resolve().parents[2]


def test_every_file_that_uses_the_keyed_service_runs_in_the_process_that_makes_it() -> None:
    users = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if path != Path(__file__) and "keyed_service" in path.read_text()
    }
    assert users == set(SHARING_A_SERVER)


def _hold(alone: bool, entered: threading.Event, leave: threading.Event) -> threading.Thread:
    def run() -> None:
        with holding_broker(alone=alone):
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_readers_share_the_broker_and_a_restart_waits_for_them_and_keeps_new_readers_out(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", f"unit-{time.monotonic_ns()}")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    first, second, writer, late = (threading.Event() for _ in range(4))
    leave_first, leave_second, leave_writer, leave_late = (threading.Event() for _ in range(4))

    threads = [_hold(False, first, leave_first), _hold(False, second, leave_second)]
    assert first.wait(5) and second.wait(5), "two readers hold the broker at once"
    threads.append(_hold(True, writer, leave_writer))
    time.sleep(0.3)
    assert not writer.is_set(), "a restart waits for the readers"
    threads.append(_hold(False, late, leave_late))
    time.sleep(0.3)
    assert not late.is_set(), "a reader that comes after a waiting restart waits behind it"

    leave_first.set()
    leave_second.set()
    assert writer.wait(5), "the restart holds the broker once the readers are gone"
    time.sleep(0.3)
    assert not late.is_set(), "nobody shares it with the restart"
    leave_writer.set()
    assert late.wait(5)
    leave_late.set()
    for thread in threads:
        thread.join(5)
