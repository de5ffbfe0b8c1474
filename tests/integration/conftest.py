"""The job layer's integration tests: a store and a submitter on the servers of tests/conftest.py (a real
nx-27017 process or MONGO_URL, the local RabbitMQ; a fresh database and queue names per test), fake models, and
workers run in threads against them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pika
import pytest
from prometheus_client import CollectorRegistry
from support.job_servers import settings_env
from support.models import DIGITS_LIKE
from support.processes import wait_until

from service.evidence.records import Recorder
from service.jobs.metrics import JobMetrics
from service.jobs.store import JobStore, connect_store
from service.jobs.submit import JobSubmitter, submitting
from service.jobs.worker import Predictor, Worker
from service.settings import JobSettings


@pytest.fixture
def store(job_settings: JobSettings) -> Iterator[JobStore]:
    store = connect_store(job_settings)
    store.ensure_indexes()
    yield store
    store.close()


@pytest.fixture
def submitter(job_settings: JobSettings, store: JobStore) -> Iterator[JobSubmitter]:
    with submitting(job_settings, store) as submitter:
        yield submitter


class FakeModel:
    """Softmax of the first ten pixels; rows whose first pixel is 13 make it raise (a poison job).

    Records the first pixel of every row it predicts, to count how often each job was worked on.
    """

    name = "fake-digits"
    version = "7"
    contract = DIGITS_LIKE

    def __init__(self) -> None:
        self.seen: list[float] = []
        self._lock = threading.Lock()

    def predict(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = rows["pixels"]
        if (pixels[:, 0] == 13).any():
            raise RuntimeError("poison row")
        with self._lock:
            self.seen.extend(pixels[:, 0].tolist())
        return {"probabilities": softmax(pixels[:, :10])}


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

    def start(
        predictor: Predictor, settings: JobSettings | None = None, recorder: Recorder | None = None
    ) -> Worker:
        settings = settings or job_settings
        store = connect_store(settings)
        worker = Worker(settings, store, predictor, JobMetrics(CollectorRegistry()), recorder=recorder)
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
    """For worker processes (`python -m support.fake_worker conftest:SlowFakeModel`): 0.2 s a batch, time to kill one mid-batch."""

    def predict(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
    def array(n: int, first_pixel: float = 1.0) -> dict[str, np.ndarray]:
        """The same rows as checked rows by input name: what the job API hands the submitter."""
        return {"pixels": np.asarray(Kit.rows(n, first_pixel), dtype=np.float32)}

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
        """The environment a `python -m service.jobs.worker` process needs to build the same settings."""
        return {**os.environ, **settings_env(settings)}


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
