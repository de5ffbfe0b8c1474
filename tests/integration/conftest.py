"""Servers for the job layer's integration tests: a real nx-27017 process (or MONGO_URL) and the local
RabbitMQ (started with `rabbitmq-server -detached` when it is not running), a fresh database and queue names
per test, and workers run in threads against them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pika
import pytest
from prometheus_client import CollectorRegistry
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from support.processes import free_port, running, wait_until

from service.job_metrics import JobMetrics
from service.job_queue import ThreadPublishers
from service.job_settings import JobSettings
from service.job_store import JobStore, connect_store
from service.jobs import JobSubmitter
from service.model_loader import InputSpec
from service.schemas import InstanceRules
from service.worker import Predictor, Worker

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
NX = str(Path(sys.executable).with_name("nx-27017"))


def broker_up(url: str = AMQP_URL) -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.AMQPError:
        return False
    return True


def mongo_up(url: str) -> bool:
    try:
        with MongoClient(url, serverSelectionTimeoutMS=500) as client:
            client.admin.command("ping")
    except PyMongoError:
        return False
    return True


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MONGO_URL if given, else an nx-27017 server process with its own data folder and PID file."""
    if os.environ.get("MONGO_URL"):
        yield os.environ["MONGO_URL"]
        return
    folder = tmp_path_factory.mktemp("nx-27017")
    port = free_port()
    url = f"mongodb://127.0.0.1:{port}"
    command = [
        NX, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(folder / "data"),
        "--pid-file", str(folder / "nx.pid"), "--log-file", str(folder / "nx.log"),
    ]  # fmt: skip
    with running(command, lambda: mongo_up(url), "nx-27017", folder / "out.log", timeout_s=30):
        yield url


@pytest.fixture(scope="session")
def is_nx(mongo_url: str) -> bool:
    return not os.environ.get("MONGO_URL")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    if not broker_up():
        subprocess.run(["rabbitmq-server", "-detached"], check=False)
        wait_until(broker_up, 60, "RabbitMQ")
    return AMQP_URL


@pytest.fixture
def job_settings(mongo_url: str, amqp_url: str) -> Iterator[JobSettings]:
    """Unique database and queue names; fast timings so that retries and sweeps happen within a test."""
    name = f"t{uuid.uuid4().hex[:12]}"
    settings = JobSettings(
        _env_file=None,
        amqp_url=amqp_url,
        mongo_url=mongo_url,
        mongo_database=name,
        job_queue=f"test.{name}",
        batch_wait_ms=10,
        prefetch=64,
        batch_size=64,
        retry_delay_s=0.1,
        lease_s=3.0,
        sweep_interval_s=0.5,
        publish_grace_s=1.0,
    )
    yield settings
    if broker_up(amqp_url):
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        for queue in (settings.job_queue, settings.retry_queue, settings.dead_letter_queue):
            channel.queue_delete(queue)
        connection.close()


@pytest.fixture
def store(job_settings: JobSettings) -> Iterator[JobStore]:
    store = connect_store(job_settings)
    store.ensure_indexes()
    yield store
    store.close()


def rules(max_rows: int) -> InstanceRules:
    return InstanceRules(lambda: InputSpec(n_features=64, dtype=np.dtype("float32")), max_rows)


@pytest.fixture
def submitter(job_settings: JobSettings, store: JobStore) -> Iterator[JobSubmitter]:
    publishers = ThreadPublishers(job_settings)
    submitter = JobSubmitter(store, publishers, job_settings.job_queue, rules(job_settings.max_rows_per_job))
    yield submitter
    submitter.close()
    publishers.close()


class FakeModel:
    """Softmax of the first ten pixels; rows whose first pixel is 13 make it raise (a poison job).

    Records the first pixel of every row it predicts, to count how often each job was worked on.
    """

    name = "fake-digits"
    version = "7"

    def __init__(self) -> None:
        self.seen: list[float] = []
        self._lock = threading.Lock()

    def predict(self, rows: np.ndarray) -> np.ndarray:
        if (rows[:, 0] == 13).any():
            raise RuntimeError("poison row")
        with self._lock:
            self.seen.extend(rows[:, 0].tolist())
        return softmax(rows[:, :10])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def fake_model() -> FakeModel:
    return FakeModel()


StartWorker = Callable[..., Worker]


@pytest.fixture
def start_worker(job_settings: JobSettings) -> Iterator[StartWorker]:
    """Workers in threads, each with its own connections; all stopped (batch in hand finished) at teardown."""
    started: list[tuple[Worker, threading.Thread, JobStore]] = []

    def start(predictor: Predictor, settings: JobSettings | None = None) -> Worker:
        settings = settings or job_settings
        store = connect_store(settings)
        worker = Worker(settings, store, predictor, JobMetrics(CollectorRegistry()))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread, store))
        return worker

    yield start
    for worker, thread, store in started:
        worker.stop.set()
        thread.join(timeout=30)
        store.close()


class SlowFakeModel(FakeModel):
    """For worker processes (`--predictor conftest:SlowFakeModel`): 0.2 s a batch, time to kill one mid-batch."""

    def predict(self, rows: np.ndarray) -> np.ndarray:
        time.sleep(0.2)
        return super().predict(rows)


class Kit:
    """Helpers the job tests share, handed out by the `kit` fixture (conftest modules are not imported)."""

    softmax = staticmethod(softmax)

    @staticmethod
    def rows(n: int, first_pixel: float = 1.0) -> list[list[float]]:
        """n digit-like rows (0..16) whose first pixel marks them."""
        values = np.random.default_rng(n).integers(0, 17, size=(n, 64)).astype(float)
        values[:, 0] = first_pixel
        return values.tolist()

    @staticmethod
    def wait_final(store: JobStore, job_ids: list[str], timeout_s: float = 60) -> dict[str, dict]:
        """Every job's document once all are succeeded or failed."""
        documents: dict[str, dict] = {}

        def done() -> bool:
            for job_id in job_ids:
                if job_id not in documents:
                    document = store.get(job_id)
                    if document and document["status"] in ("succeeded", "failed"):
                        documents[job_id] = document
            return len(documents) == len(set(job_ids))

        wait_until(done, timeout_s, f"{len(job_ids)} jobs")
        return documents

    @staticmethod
    def queue_depth(settings: JobSettings, queue: str) -> int:
        connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        try:
            return connection.channel().queue_declare(queue, passive=True).method.message_count
        finally:
            connection.close()

    @staticmethod
    def worker_env(settings: JobSettings) -> dict[str, str]:
        """The environment a `python -m service.worker` process needs to build the same settings."""
        fields = settings.model_dump(exclude_none=True)
        return {**os.environ, **{key.upper(): str(value) for key, value in fields.items()}}


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
