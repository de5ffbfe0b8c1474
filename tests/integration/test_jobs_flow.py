"""The job layer end to end against real servers: HTTP submission, the worker, results, idempotency, load."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from support.jobs_app import create_jobs_app
from support.models import job_request

from service.jobs.api import BarePath
from service.jobs.store import JobStore
from service.jobs.submit import JobSubmitter

MAX_ROWS_PER_JOB = 10_000  # JobSettings' default


def mounted(submitter: JobSubmitter, store: JobStore) -> TestClient:
    """The job app mounted at /jobs as the BentoML service mounts it, with the bare-path middleware."""
    app = Starlette(
        routes=[Mount("/jobs", create_jobs_app(submitter, store, job_request(MAX_ROWS_PER_JOB)))],
        middleware=[Middleware(BarePath)],
    )
    return TestClient(app)


def test_round_trip_over_http(store, submitter, fake_model, start_worker, kit) -> None:
    worker = start_worker(fake_model)
    client = mounted(submitter, store)
    body = kit.rows(3)
    answer = client.post("/jobs", json={"instances": body}, follow_redirects=False)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["status"] == "queued" and job["url"] == f"/jobs/{job['id']}"
    assert answer.headers["location"] == job["url"]

    kit.wait_final(store, [job["id"]], timeout_s=30)
    view = client.get(job["url"]).json()
    assert view["status"] == "succeeded" and view["attempts"] == 1
    assert view["model"] == {"name": "fake-digits", "version": "7"}
    expected = kit.softmax(np.asarray(body, dtype=np.float32)[:, :10])
    assert view["result"]["predictions"] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(view["result"]["probabilities"], expected, atol=1e-6)
    timings = view["timings"]
    assert timings["created_at"] <= timings["started_at"] <= timings["finished_at"]
    assert 0 <= timings["total_s"] < 30

    registry = worker.metrics_registry
    assert registry.get_sample_value("nbship_jobs_finished_total", {"state": "succeeded"}) == 1
    assert registry.get_sample_value("nbship_job_submit_to_done_seconds_count", {"state": "succeeded"}) == 1


def test_unknown_or_malformed_id_is_404_and_bad_rows_are_422(store, submitter, kit) -> None:
    client = mounted(submitter, store)
    assert client.get(f"/jobs/{'0' * 32}").status_code == 404
    assert client.get("/jobs/not-a-job-id").json()["detail"] == "no job 'not-a-job-id'"

    short = kit.rows(2)
    short[1] = short[1][:63]
    answer = client.post("/jobs/", json={"instances": short})
    assert answer.status_code == 422
    assert "row 1: has 63 values" in answer.json()["detail"]
    json = {"content-type": "application/json"}
    nan = client.post("/jobs", content=b'{"instances": [[NaN' + b", 0" * 63 + b"]]}", headers=json)
    assert nan.status_code == 422 and "row 0, field 0" in nan.json()["detail"]
    unknown = client.post("/jobs", json={"rows": kit.rows(1)})
    assert unknown.status_code == 422 and "unknown key 'rows'" in unknown.json()["detail"]
    assert client.post("/jobs", content=b"{not json", headers=json).status_code == 400
    too_many = client.post("/jobs", json={"instances": [[0.0] * 64] * 10_001})
    assert too_many.status_code == 422 and "at most 10000 rows" in too_many.json()["detail"]
    assert len(too_many.content) < 2000  # an error never echoes the input
    assert store.counts()["queued"] == 0  # nothing half-written


def test_same_idempotency_key_returns_the_same_job(job_settings, store, submitter, kit) -> None:
    client = mounted(submitter, store)
    first = client.post("/jobs", json={"instances": kit.rows(2)}, headers={"Idempotency-Key": "order-42"})
    again = client.post("/jobs", json={"instances": kit.rows(2)}, headers={"Idempotency-Key": "order-42"})
    other = client.post("/jobs", json={"instances": kit.rows(2)}, headers={"Idempotency-Key": "order-43"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert store.counts()["queued"] == 2
    assert kit.queue_depth(job_settings, job_settings.job_queue) == 2  # one message per job, not per request

    reused = client.post("/jobs", json={"instances": kit.rows(3)}, headers={"Idempotency-Key": "order-42"})
    assert reused.status_code == 409
    error = reused.json()["errors"][0]
    assert error["loc"] == ["header", "Idempotency-Key"] and error["type"] == "idempotency_key_reused"
    assert f"already used for job {first.json()['id']} with different instances" in error["msg"]
    assert store.counts()["queued"] == 2 and "payload_sha256" not in client.get(first.json()["url"]).json()


def test_500_concurrent_submissions_all_succeed_once(store, submitter, fake_model, start_worker, kit) -> None:
    start_worker(fake_model)
    with ThreadPoolExecutor(32) as pool:
        jobs = list(pool.map(lambda i: submitter.submit(kit.array(1, first_pixel=100 + i)), range(500)))
    ids = [job.id for job in jobs]
    assert len(set(ids)) == 500
    documents = kit.wait_final(store, ids, timeout_s=120)
    assert {d["status"] for d in documents.values()} == {"succeeded"}
    assert sorted(fake_model.seen) == [100.0 + i for i in range(500)]  # each job predicted exactly once
    assert store.counts() == {"queued": 0, "running": 0, "succeeded": 500, "failed": 0}
