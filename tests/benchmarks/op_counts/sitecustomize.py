"""Counts each process's store commands and broker methods, for the jobs benchmark's `--profile` runs.

On PYTHONPATH with OP_COUNTS_DIR set, Python imports this module at start-up in every process of a case (the
API's and the front's workers, the job workers, the Celery worker and the processes it forks): a pymongo command
listener counts store round trips by command (journaled writes apart), and the AMQP methods each process
sends and receives are counted by name (pika's, for the job layer; py-amqp's, for Celery). Each process writes
its counts to OP_COUNTS_DIR/<pid>.json once a second, read by jobs_bench.op_counts.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def _count(key: str) -> None:
    with _lock:
        _counts[key] += 1


def _write_every_second(folder: Path) -> None:
    while True:
        threading.Event().wait(1.0)
        with _lock:
            snapshot = dict(_counts)
        (folder / f"{os.getpid()}.json").write_text(json.dumps(snapshot))


def _start_writer(folder: Path) -> None:
    threading.Thread(target=_write_every_second, args=(folder,), name="op-counts", daemon=True).start()


def _count_store_commands() -> None:
    from pymongo import monitoring

    class Commands(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            journaled = event.command.get("writeConcern", {}).get("j")
            _count(f"store {event.command_name}{' (journaled)' if journaled else ''}")

        def succeeded(self, event: Any) -> None:
            pass

        def failed(self, event: Any) -> None:
            pass

    monitoring.register(Commands())


def _count_pika_methods() -> None:
    from pika import connection, frame

    send, process = connection.Connection._send_method, connection.Connection._process_frame

    def counted_send(self: Any, channel_number: int, method: Any, content: Any = None) -> None:
        _count(f"amqp sent {method.NAME}")
        send(self, channel_number, method, content)

    def counted_process(self: Any, value: Any) -> None:
        if isinstance(value, frame.Method):
            _count(f"amqp received {value.method.NAME}")
        process(self, value)

    connection.Connection._send_method = counted_send
    connection.Connection._process_frame = counted_process


def _count_py_amqp_methods() -> None:
    from amqp import abstract_channel, spec
    from amqp import connection as amqp_connection

    names = {
        value: f"{group.__name__}.{name}"
        for group in vars(spec).values()
        if isinstance(group, type) and hasattr(group, "CLASS_ID")
        for name, value in vars(group).items()
        if isinstance(value, tuple) and len(value) == 2
    }
    send = abstract_channel.AbstractChannel.send_method
    inbound = amqp_connection.Connection.on_inbound_method

    def counted_send(self: Any, sig: Any, *args: Any, **kwargs: Any) -> Any:
        _count(f"amqp sent {names.get(sig, sig)}")
        return send(self, sig, *args, **kwargs)

    def counted_inbound(self: Any, channel_id: int, sig: Any, *args: Any) -> Any:
        _count(f"amqp received {names.get(sig, sig)}")
        return inbound(self, channel_id, sig, *args)

    abstract_channel.AbstractChannel.send_method = counted_send
    amqp_connection.Connection.on_inbound_method = counted_inbound


def _install(folder: Path) -> None:
    _count_store_commands()
    _count_pika_methods()
    _count_py_amqp_methods()
    _start_writer(folder)
    os.register_at_fork(after_in_child=lambda: _forked(folder))


def _forked(folder: Path) -> None:
    """A forked process (Celery's prefork pool) counts its own: from zero, with a lock and a writer of its own
    (the parent's writer thread is not copied, and its lock may have been held at the fork)."""
    global _lock
    _lock = threading.Lock()
    _counts.clear()
    _start_writer(folder)


if os.environ.get("OP_COUNTS_DIR"):
    _install(Path(os.environ["OP_COUNTS_DIR"]))
