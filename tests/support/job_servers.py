"""The job layer's servers for tests: a real nx-27017 process (or MONGO_URL) and the local RabbitMQ, plus job
settings with names of their own, so tests and served processes share servers without sharing state."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from service.settings import JobSettings, Settings, WorkerSettings
from support.processes import running, wait_until

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
NX = str(Path(sys.executable).with_name("nx-27017"))


def broker_up(url: str = AMQP_URL) -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.AMQPError:
        return False
    return True


def ensure_broker() -> str:
    """The local RabbitMQ's URL, started with `rabbitmq-server -detached` when it is not running."""
    if not broker_up():
        subprocess.run(["rabbitmq-server", "-detached"], check=False)
        wait_until(broker_up, 60, "RabbitMQ")
    return AMQP_URL


def mongo_up(url: str) -> bool:
    try:
        with MongoClient(url, serverSelectionTimeoutMS=500) as client:
            client.admin.command("ping")
    except PyMongoError:
        return False
    return True


@contextmanager
def nx_server(folder: Path, port: int) -> Iterator[str]:
    """An nx-27017 process on 127.0.0.1:port with its own data folder and PID file; yields its URL."""
    url = f"mongodb://127.0.0.1:{port}"
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        NX, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(folder / "data"),
        "--pid-file", str(folder / "nx.pid"), "--log-file", str(folder / "nx.log"),
    ]  # fmt: skip
    with running(command, lambda: mongo_up(url), "nx-27017", folder / "out.log", timeout_s=30):
        yield url


def fresh_job_settings(mongo_url: str, amqp_url: str, **overrides: object) -> WorkerSettings:
    """A database and queue names of their own; fast timings so that retries and sweeps happen within a test. A
    worker's settings: the job layer's and the worker's own (the API reads those it knows)."""
    name = f"t{uuid.uuid4().hex[:12]}"
    fields: dict[str, object] = {
        "amqp_url": amqp_url,
        "mongo_url": mongo_url,
        "mongo_database": name,
        "job_queue": f"test.{name}",
        "batch_wait_ms": 10,
        "prefetch": 64,
        "batch_size": 64,
        "retry_delay_s": 0.1,
        "lease_s": 3.0,
        "sweep_interval_s": 0.5,
        "publish_grace_s": 1.0,
    }
    return WorkerSettings(_env_file=None, **(fields | overrides))  # type: ignore[arg-type]


def delete_queues(settings: JobSettings) -> None:
    if not broker_up(settings.amqp_url):
        return
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    channel = connection.channel()
    for queue in (settings.job_queue, settings.retry_queue, settings.dead_letter_queue):
        channel.queue_delete(queue)
    connection.close()


def settings_env(settings: JobSettings) -> dict[str, str]:
    """Environment variables from which a process (worker, service) builds the same settings."""
    fields = settings.model_dump(exclude_none=True, exclude=set(Settings.model_fields))
    return {key.upper(): str(value) for key, value in fields.items()}
