"""Job layer benchmark: `./noxw -s bench -- jobs [--jobs N] [--concurrency C] [--cap-s S]`.

5,000 single-row jobs submitted at concurrency 32 (store first, then a confirmed publish, as the API does),
drained by (1) the micro-batching worker and (2) the classic worker of the RabbitMQ tutorial (prefetch_count=1,
one predict and one store update per message), in the same run, on the same servers and the same Keras model.
Then the bulk case: one job of 10,000 rows. Servers: the local RabbitMQ and an nx-27017 process (or
MONGO_URL). A case still draining `--cap-s` seconds after its first submission is stopped there and reported
over the jobs it finished. Writes docs/benchmarks/jobs.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pika
from common import DOCS, ROOT, header
from prometheus_client import CollectorRegistry

from service.jobs.metrics import JobMetrics
from service.jobs.queue import JobMessage, ThreadPublishers, connection_parameters, declare_queues
from service.jobs.settings import JobSettings
from service.jobs.store import JobStore, connect_store, result_document
from service.jobs.submit import JobSubmitter
from service.jobs.worker import Predictor, Worker

sys.path.insert(0, str(ROOT / "tests"))
from support.job_servers import mongo_up
from support.processes import free_port, running


class KerasModel:
    """A digits-sized Keras MLP called through predict_on_batch, the fast path."""

    name = "bench-mlp"
    version = "0"

    def __init__(self) -> None:
        from support.digits import build_model
        from support.models import DIGITS_LIKE

        from pipeline.quiet import quiet_keras
        from service.models.loader import configure_threads

        configure_threads(1, 1)
        self.contract = DIGITS_LIKE
        self._model = build_model(hidden_units=128, learning_rate=1e-3, dropout=0.1, seed=0)
        quiet_keras()
        self.predict(np.zeros((1, 64), dtype=np.float32))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.predict_on_batch(rows))


class ClassicWorker:
    """The tutorial's worker: prefetch_count=1; per message one read, one predict, one update, one ack.

    It reads and writes the collection directly, as such a worker would: no claim, no lease. The result is the
    same document the micro-batching worker writes, with the same (journaled) write concern.
    """

    def __init__(self, settings: JobSettings, store: JobStore, predictor: Predictor) -> None:
        self._settings, self._store, self._predictor = settings, store, predictor
        self.stop = threading.Event()

    def run(self) -> None:
        connection = pika.BlockingConnection(connection_parameters(self._settings))
        channel = connection.channel()
        declare_queues(channel, self._settings)
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(self._settings.job_queue, self._callback)
        while not self.stop.is_set():
            connection.process_data_events(time_limit=0.2)
        connection.close()

    def _callback(self, channel, method, _properties, body: bytes) -> None:
        jobs = self._store._jobs
        job_id = JobMessage.decode(body).job_id
        document = jobs.find_one({"_id": job_id}, {"inputs": 1, "n_rows": 1})
        rows = np.frombuffer(document["inputs"], dtype="<f4").reshape(document["n_rows"], -1)
        result = result_document(self._predictor.predict(rows))
        jobs.update_one(
            {"_id": job_id},
            {"$set": {"status": "succeeded", "result": result}, "$currentDate": {"finished_at": True}},
        )
        channel.basic_ack(delivery_tag=method.delivery_tag)


def rows(n: int) -> list[list[float]]:
    return np.random.default_rng(n).integers(0, 17, size=(n, 64)).astype(float).tolist()


def run_case(
    settings: JobSettings,
    make_worker: Callable[[JobStore], Worker | ClassicWorker],
    jobs: int,
    n_rows: int,
    c: int,
    cap_s: float,
) -> dict[str, float]:
    store = connect_store(settings)
    store.ensure_indexes()
    publishers = ThreadPublishers(settings)
    submitter = JobSubmitter(store, publishers, settings.job_queue)
    worker = make_worker(connect_store(settings))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    body = np.asarray(rows(n_rows), dtype=np.float32)
    started = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        list(pool.map(lambda _: submitter.submit(body), range(jobs)))
    submitted = time.perf_counter() - started
    submitter.close()
    # Poll rarely, with an index count: the server serialises commands, and polling must not slow the workers.
    deadline = started + cap_s
    while store.counts(("succeeded",))["succeeded"] < jobs and time.perf_counter() < deadline:
        time.sleep(1)
    worker.stop.set()
    thread.join(timeout=60)
    publishers.close()
    documents = list(store._jobs.find({}, {"created_at": 1, "finished_at": 1}))
    store.close()
    created = np.array([d["created_at"].timestamp() for d in documents])
    finished = np.array([d["finished_at"].timestamp() for d in documents if "finished_at" in d])
    latency = np.array(
        [(d["finished_at"] - d["created_at"]).total_seconds() for d in documents if "finished_at" in d]
    )
    wall = finished.max() - created.min()
    return {
        "done": len(finished),
        "jobs_per_s": len(finished) / wall,
        "p50_ms": 1000 * float(np.percentile(latency, 50)),
        "p99_ms": 1000 * float(np.percentile(latency, 99)),
        "wall_s": wall,
        "submit_s": submitted,
    }


def fresh(settings: JobSettings) -> JobSettings:
    name = f"bench{uuid.uuid4().hex[:8]}"
    return settings.model_copy(update={"mongo_database": name, "job_queue": f"bench.{name}"})


def drop_queues(settings: JobSettings) -> None:
    connection = pika.BlockingConnection(connection_parameters(settings))
    channel = connection.channel()
    for queue in (settings.job_queue, settings.retry_queue, settings.dead_letter_queue):
        channel.queue_delete(queue)
    connection.close()


def measure(mongo_url: str, args: argparse.Namespace) -> str:
    model = KerasModel()
    base = JobSettings(_env_file=None, mongo_url=mongo_url, prefetch=512, batch_size=256, batch_wait_ms=20)
    cases: list[tuple[str, JobSettings, Callable[[JobStore, JobSettings], Worker | ClassicWorker], int, int]] = [
        ("micro-batching worker", fresh(base), lambda s, st: Worker(st, s, model, JobMetrics(CollectorRegistry())), args.jobs, 1),
        ("classic worker (tutorial)", fresh(base), lambda s, st: ClassicWorker(st, s, model), args.jobs, 1),
        ("micro-batching worker, bulk", fresh(base), lambda s, st: Worker(st, s, model, JobMetrics(CollectorRegistry())), 1, 10_000),
    ]  # fmt: skip
    results = []
    for title, settings, factory, jobs, n_rows in cases:
        figures = run_case(
            settings,
            lambda store, f=factory, s=settings: f(store, s),
            jobs,
            n_rows,
            args.concurrency,
            args.cap_s,
        )
        drop_queues(settings)
        results.append((title, jobs, n_rows, figures))
        print(f"{title}: {figures}", file=sys.stderr)
    speedup = results[0][3]["jobs_per_s"] / results[1][3]["jobs_per_s"]
    lines = [
        header("Jobs benchmark"),
        f"{args.jobs} single-row jobs submitted at concurrency {args.concurrency} through `service.jobs.submit` (journaled "
        "insert, then a confirmed publish), drained by each worker in turn; then one job of 10,000 rows. Same "
        "process, same RabbitMQ (local) and MongoDB-protocol server (nx-27017 unless MONGO_URL), same Keras "
        "MLP (64-128-10, `predict_on_batch`, one TensorFlow thread). Micro-batch: prefetch 512, B=256 rows, "
        "T=20 ms. jobs/s: finished jobs over the time from the first submission to the last success; latency: "
        f"submit to success (store stamps). A case is stopped {args.cap_s:.0f} s after its first submission; a "
        "stopped case's figures cover the jobs it finished (its latencies are then a lower bound).\n",
        "| worker | jobs x rows | finished | jobs/s | p50 ms | p99 ms | first submit to last success s "
        "| submit phase s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for title, jobs, n_rows, f in results:
        lines.append(
            f"| {title} | {jobs} x {n_rows} | {f['done']} | {f['jobs_per_s']:.0f} | {f['p50_ms']:.0f} "
            f"| {f['p99_ms']:.0f} | {f['wall_s']:.2f} | {f['submit_s']:.2f} |"
        )
    lines.append(f"\nMicro-batching / classic throughput: **{speedup:.1f}x** (target: at least 5x).\n")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py jobs", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--cap-s", type=float, default=300.0, help="stop a case this long after its first submit"
    )
    args = parser.parse_args(argv)
    from pipeline.quiet import quiet

    quiet()
    if os.environ.get("MONGO_URL"):
        report = measure(os.environ["MONGO_URL"], args)
    else:
        with tempfile.TemporaryDirectory() as folder:
            port = free_port()
            url = f"mongodb://127.0.0.1:{port}"
            command = [
                str(Path(sys.executable).with_name("nx-27017")), "--host", "127.0.0.1", "--port", str(port),
                "--data-dir", f"{folder}/data", "--pid-file", f"{folder}/nx.pid", "--log-file", f"{folder}/nx.log",
            ]  # fmt: skip
            with running(command, lambda: mongo_up(url), "nx-27017", Path(folder) / "out.log", timeout_s=30):
                report = measure(url, args)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "jobs.md").write_text(report)
    print(report)
    return 0
