"""The job layer's pieces that need no server: messages, ids, the job view, the bare path, batch splitting."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from support.models import DIGITS_LIKE

from service.jobs.api import BarePath, job_view
from service.jobs.metrics import JobMetrics
from service.jobs.queue import JobMessage, MalformedMessage
from service.jobs.store import ClaimedJob, Job, Submission, is_job_id, job_id_for
from service.jobs.submit import JobSubmitter
from service.jobs.worker import Delivery, Worker
from service.models.contract import rows_in
from service.settings import JobSettings


@pytest.mark.parametrize(
    "body", [b"", b"null", b"[]", b'{"job_id": 1, "n_rows": 1}', b'{"job_id": "a", "n_rows": true}', b"\xff"]
)
def test_malformed_messages_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        JobMessage.decode(body)


def test_messages_round_trip() -> None:
    message = JobMessage("ab" * 16, 3)
    assert JobMessage.decode(message.encode()) == message


def test_an_idempotency_key_always_maps_to_the_same_id_of_its_owner() -> None:
    assert job_id_for("order-1") == job_id_for("order-1") != job_id_for("order-2")
    assert job_id_for("order-1", "alice") == job_id_for("order-1", "alice") != job_id_for("order-1", "bob")
    assert job_id_for("order-1", "alice") != job_id_for("order-1")
    assert job_id_for("eorder-1", "alic") != job_id_for("order-1", "alice")  # owner and key stay apart
    assert job_id_for(None) != job_id_for(None)
    assert all(is_job_id(job_id_for(key)) for key in ("order-1", None))
    assert not is_job_id("../" + "a" * 29) and not is_job_id("A" * 32)


def test_job_view_reports_durations_once_finished() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    document = {
        "_id": "a" * 32, "status": "succeeded", "n_rows": 1, "attempts": 1, "result": {"predictions": [3]},
        "model": {"name": "m", "version": "2"}, "created_at": t0,
        "started_at": t0 + dt.timedelta(seconds=1), "finished_at": t0 + dt.timedelta(seconds=3),
    }  # fmt: skip
    view = job_view(document | {"lease_losses": 2})
    assert (view["attempts"], view["lease_losses"]) == (
        1,
        2,
    )  # prediction attempts; leases lost with a worker
    assert view["timings"] | {} == {
        "created_at": "2026-01-01T00:00:00+00:00",
        "started_at": "2026-01-01T00:00:01+00:00",
        "finished_at": "2026-01-01T00:00:03+00:00",
        "queued_s": 1.0,
        "run_s": 2.0,
        "total_s": 3.0,
    }
    queued = job_view({"_id": "b" * 32, "status": "queued", "n_rows": 2, "created_at": t0})
    assert "result" not in queued and "queued_s" not in queued["timings"]
    assert (queued["attempts"], queued["lease_losses"]) == (0, 0)  # a document from before the counters


def test_the_bare_mount_path_is_served_without_a_redirect() -> None:
    inner = FastAPI()
    inner.post("/")(lambda: {"ok": True})
    app = Starlette(routes=[Mount("/jobs", inner)], middleware=[Middleware(BarePath)])
    client = TestClient(app)
    assert client.post("/jobs", follow_redirects=False).json() == {"ok": True}
    assert client.post("/jobs/", follow_redirects=False).json() == {"ok": True}
    without = TestClient(Starlette(routes=[Mount("/jobs", inner)]))
    assert without.post("/jobs", follow_redirects=False).status_code == 307  # why the middleware exists


class Model:
    name, version = "m", "1"
    contract = DIGITS_LIKE

    def predict(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = rows["pixels"]
        if (pixels[:, 0] < 0).any():
            raise ValueError("negative pixel")
        return {"probabilities": np.full((len(pixels), 10), 0.1)}


def claimed(job_id: str, n: int, first: float, name: str = "pixels") -> ClaimedJob:
    rows = np.zeros((n, 64), dtype=np.float32)
    rows[:, 0] = first
    return ClaimedJob(job_id, "token", {name: rows}, 1, dt.datetime.now(dt.UTC))


def test_one_bad_job_does_not_fail_its_batch() -> None:
    metrics = JobMetrics(CollectorRegistry())
    worker = Worker(JobSettings(_env_file=None), store=None, models=Model(), metrics=metrics)  # type: ignore[arg-type]
    # "c" was stored before inputs were named: its rows are the model's only input all the same.
    jobs = [claimed("a", 2, 1), claimed("b", 1, -1), claimed("c", 3, 1, name="")]
    outcomes, failures, _ = worker._predict(jobs, Model())
    assert [(o.job.id, len(o.result["probabilities"])) for o in outcomes] == [("a", 2), ("c", 3)]
    assert outcomes[0].result["predictions"] == [0, 0]
    assert [(f.job.id, f.error) for f in failures] == [("b", "ValueError: negative pixel")]


class RecordingStore:
    """The store calls a submitter and a worker make, recorded; every claim succeeds, no result lands."""

    def __init__(self) -> None:
        self.marked: list[list[str]] = []

    def create_many(self, submissions: list[Submission]) -> list[Job]:
        return [
            Job(job_id_for(s.idempotency_key, s.owner), "queued", rows_in(s.rows), created=True)
            for s in submissions
        ]

    def mark_published(self, job_ids: list[str]) -> None:
        self.marked.append(list(job_ids))

    def claim(self, job_ids: list[str]) -> list[ClaimedJob]:
        return [claimed(job_id, 1, 1) for job_id in job_ids]

    def succeed(self, outcomes: list, model: dict) -> int:
        return 0  # every claim was lost


def test_published_marks_are_written_in_bulk_after_the_publishes() -> None:
    store, published = RecordingStore(), []

    class Publisher:
        def publish_group(self, queue: str, bodies: list[bytes]) -> list[bool]:
            published.extend(JobMessage.decode(body).job_id for body in bodies)
            return [True] * len(bodies)

    submitter = JobSubmitter(store, Publisher(), "q", mark_interval_s=60)  # type: ignore[arg-type]
    ids = [submitter.submit({"pixels": np.zeros((1, 64), dtype=np.float32)}).id for _ in range(50)]
    assert published == ids and store.marked == []  # nothing written per submission
    submitter.close()
    assert store.marked == [ids]


class Channel:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def basic_ack(self, tag: int) -> None:
        self.calls.append(("ack", tag))

    def basic_nack(self, tag: int, requeue: bool) -> None:
        self.calls.append(("requeue" if requeue else "drop", tag))

    def basic_reject(self, tag: int, requeue: bool) -> None:
        self.calls.append(("dead-letter", tag))


def test_messages_whose_results_did_not_land_go_back_to_the_queue() -> None:
    metrics = JobMetrics(CollectorRegistry())
    worker = Worker(JobSettings(_env_file=None), RecordingStore(), Model(), metrics)  # type: ignore[arg-type]
    channel = Channel()
    batch = [Delivery(1, JobMessage("a" * 32, 1)), Delivery(2, None)]
    worker._process(channel, batch)  # type: ignore[arg-type]
    assert channel.calls == [("requeue", 1), ("dead-letter", 2)]
