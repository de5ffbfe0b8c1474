"""Nothing lost, nothing done twice: poison jobs, malformed messages, servers down, workers killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pika
import pytest
from fastapi.testclient import TestClient
from support.errors import one_error
from support.jobs_app import create_jobs_app
from support.models import job_request
from support.processes import free_port, spawn, wait_until

from service.jobs.queue import GroupPublishers, JobMessage, Publisher, declare_queues
from service.jobs.store import JobStore, connect_store
from service.jobs.submit import JobSubmitter
from service.jobs.worker import LEASE_EXPIRED

TESTS = Path(__file__).resolve().parents[1]


def test_a_job_that_always_fails_ends_failed_in_the_dead_letter_queue(
    job_settings, store, submitter, fake_model, start_worker, kit
) -> None:
    start_worker(fake_model)
    good = [submitter.submit(kit.array(2, first_pixel=100 + i)).id for i in range(20)]
    poison = submitter.submit(kit.array(1, first_pixel=13)).id
    Publisher(job_settings).publish(job_settings.job_queue, b"not a job message")

    documents = kit.wait_final(store, [*good, poison], timeout_s=30)
    assert all(documents[job_id]["status"] == "succeeded" for job_id in good)
    failed = documents[poison]
    # Prediction failures spend the attempts, not the lease budget.
    assert failed["status"] == "failed" and failed["attempts"] == job_settings.max_attempts
    assert failed["lease_losses"] == 0 and job_settings.max_lease_losses > job_settings.max_attempts
    assert failed["error"] == "RuntimeError: poison row"

    connection = pika.BlockingConnection(pika.URLParameters(job_settings.amqp_url))
    channel = connection.channel()
    dead = []
    for _ in range(2):
        method, properties, body = channel.basic_get(job_settings.dead_letter_queue, auto_ack=True)
        assert method is not None, "expected two messages in the dead-letter queue"
        dead.append((body, properties.headers or {}))
    connection.close()
    by_body = dict(dead)
    assert by_body[b"not a job message"].get("x-death")  # rejected by the worker, dead-lettered by the broker
    assert by_body[JobMessage(poison, 1).encode()] == {
        "error": "RuntimeError: poison row",
        "attempts": job_settings.max_attempts,
        "lease_losses": 0,
    }


def lose_leases(store: JobStore, job_id: str, times: int, lease_s: float) -> None:
    """A worker takes the job and dies with it in hand, `times` times: no result, no ack. Every other loss is
    requeued by a sweep, the others taken over by the next claim: both count."""
    (claimed,) = store.claim([job_id])
    for loss in range(1, times):
        time.sleep(lease_s + 0.05)
        if loss % 2 == 0:
            assert store.requeue_expired() == 1
        (claimed,) = store.claim([job_id])
        assert (claimed.attempts, claimed.lease_losses) == (1, loss)
    time.sleep(lease_s + 0.05)  # the last lease runs out too


def test_a_job_survives_more_lost_leases_than_attempts_and_succeeds(
    job_settings, store, fake_model, start_worker, kit
) -> None:
    settings = job_settings.model_copy(
        update={"lease_s": 0.2, "max_attempts": 2, "max_lease_losses": 8, "publish_grace_s": 0.0}
    )
    dying = connect_store(settings)
    job = dying.create({"pixels": np.ones((2, 64), dtype=np.float32)})
    lose_leases(dying, job.id, 5, settings.lease_s)  # the fifth loss is found by the worker's sweeper
    dying.close()
    start_worker(fake_model, settings)  # its sweeper requeues the expired lease and publishes the job

    done = kit.wait_final(store, [job.id], timeout_s=30)[job.id]
    assert done["status"] == "succeeded" and len(done["result"]["predictions"]) == 2
    assert (done["attempts"], done["lease_losses"]) == (1, 5)
    assert kit.queue_depth(settings, settings.dead_letter_queue) == 0


def test_a_job_whose_lease_expired_on_every_attempt_ends_failed_in_the_dead_letter_queue(
    job_settings, store, fake_model, start_worker, kit
) -> None:
    settings = job_settings.model_copy(update={"lease_s": 0.1, "max_attempts": 1, "max_lease_losses": 4})
    dying = connect_store(settings)
    job = dying.create({"pixels": np.ones((2, 64), dtype=np.float32)})
    lose_leases(dying, job.id, 4, settings.lease_s)  # the budget: no claim takes the job again
    assert dying.claim([job.id]) == [] and dying.requeue_expired() == 0
    dying.close()
    start_worker(fake_model, settings)  # its sweeper finds the expired lease

    failed = kit.wait_final(store, [job.id], timeout_s=30)[job.id]
    assert failed["status"] == "failed" and (failed["attempts"], failed["lease_losses"]) == (1, 4)
    assert failed["error"] == LEASE_EXPIRED
    wait_until(lambda: kit.queue_depth(settings, settings.dead_letter_queue) == 1, 10, "the dead letter")
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    _, properties, body = connection.channel().basic_get(settings.dead_letter_queue, auto_ack=True)
    connection.close()
    assert body == JobMessage(job.id, 2).encode()
    assert properties.headers == {"error": LEASE_EXPIRED, "attempts": 1, "lease_losses": 4}
    assert fake_model.seen == []


def test_store_down_answers_503_and_publishes_nothing(job_settings, kit) -> None:
    down = job_settings.model_copy(
        update={"mongo_url": f"mongodb://127.0.0.1:{free_port()}", "mongo_timeout_ms": 300}
    )
    store = connect_store(down)
    publishers = GroupPublishers(down)
    connection = pika.BlockingConnection(pika.URLParameters(down.amqp_url))
    declare_queues(connection.channel(), down)
    connection.close()
    client = TestClient(
        create_jobs_app(JobSubmitter(store, publishers, down.job_queue), store, job_request(10))
    )
    answer = client.post("/", json={"instances": kit.rows(1)})
    assert answer.status_code == 503
    assert answer.json() == one_error(
        "job store unavailable, nothing was accepted; retry later", [], "unavailable"
    )
    assert client.get(f"/{'a' * 32}").status_code == 503
    assert kit.queue_depth(down, down.job_queue) == 0
    publishers.close()
    store.close()


def test_broker_down_at_submit_keeps_the_job_queued_until_the_sweeper_publishes_it(
    job_settings, store, fake_model, start_worker, kit
) -> None:
    no_broker = job_settings.model_copy(
        update={"amqp_url": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"}
    )
    publishers = GroupPublishers(no_broker, budget_s=0.3)
    job = JobSubmitter(store, publishers, no_broker.job_queue).submit(kit.array(1))
    assert job.status == "queued" and store.get(job.id)["status"] == "queued"
    start_worker(fake_model)  # its sweeper publishes the job once the grace period is over
    assert kit.wait_final(store, [job.id], timeout_s=30)[job.id]["status"] == "succeeded"


def worker_process(settings, kit, log: Path) -> subprocess.Popen:
    env = kit.worker_env(settings) | {"PYTHONPATH": os.pathsep.join([str(TESTS / "integration"), str(TESTS)])}
    with open(log, "ab") as out:
        return spawn(
            [sys.executable, "-m", "support.fake_worker", "conftest:SlowFakeModel"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_worker_killed_mid_batch_loses_nothing(job_settings, store, submitter, kit, tmp_path) -> None:
    settings = job_settings.model_copy(update={"batch_size": 8})
    ids = [submitter.submit(kit.array(1, first_pixel=100 + i)).id for i in range(80)]
    first = worker_process(settings, kit, tmp_path / "worker.log")
    try:
        # Kill while a batch is in hand: the slow fake model holds its jobs `running` for 0.2 s a batch.
        mid_batch = lambda: (c := store.counts())["succeeded"] >= 8 and c["running"] > 0  # noqa: E731
        wait_until(mid_batch, 60, "a batch in hand after the first batches", first)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        in_hand = {job_id for job_id in ids if store.get(job_id)["status"] == "running"}
        assert in_hand and store.counts()["succeeded"] < 80
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    second = worker_process(settings, kit, tmp_path / "worker.log")
    try:
        documents = kit.wait_final(store, ids, timeout_s=90)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, (tmp_path / "worker.log").read_text()[-2000:]
    assert {d["status"] for d in documents.values()} == {"succeeded"}
    assert all(len(d["result"]["predictions"]) == 1 for d in documents.values())
    assert store.counts() == {"queued": 0, "running": 0, "succeeded": 80, "failed": 0}
    # The batch in hand was claimed again once its lease ran out; untouched jobs were claimed once.
    # Lost leases, not prediction attempts: every job succeeded at its first attempt.
    assert all(documents[job_id]["lease_losses"] >= 1 for job_id in in_hand)
    assert all(d["lease_losses"] == 0 for job_id, d in documents.items() if job_id not in in_hand)
    assert {d["attempts"] for d in documents.values()} == {1}


def test_two_workers_never_process_one_job_twice(
    job_settings, store, submitter, fake_model, start_worker, kit
):
    ids = [submitter.submit(kit.array(1, first_pixel=100 + i)).id for i in range(200)]
    duplicates = Publisher(job_settings)
    for job_id in ids * 2:  # every job announced three times, as a sweeper racing a slow confirm would
        duplicates.publish(job_settings.job_queue, JobMessage(job_id, 1).encode())
    duplicates.close()
    start_worker(fake_model)
    start_worker(fake_model)
    documents = kit.wait_final(store, ids, timeout_s=60)
    assert {d["status"] for d in documents.values()} == {"succeeded"}
    assert {d["attempts"] for d in documents.values()} == {1}
    assert sorted(fake_model.seen) == [100.0 + i for i in range(200)]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.restarts_broker
def test_a_broker_restart_loses_no_job(job_settings, store, submitter, fake_model, start_worker, kit) -> None:
    start_worker(fake_model)
    before = [submitter.submit(kit.array(1, first_pixel=100 + i)).id for i in range(100)]
    outage_publishers = GroupPublishers(job_settings, budget_s=1.0)
    during_outage = JobSubmitter(store, outage_publishers, job_settings.job_queue)
    try:
        rabbitmqctl("stop_app")
        with ThreadPoolExecutor(20) as pool:
            during = [
                j.id
                for j in pool.map(
                    lambda i: during_outage.submit(kit.array(1, first_pixel=1000 + i)), range(20)
                )
            ]
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
    outage_publishers.close()
    after = [submitter.submit(kit.array(1, first_pixel=2000 + i)).id for i in range(20)]
    documents = kit.wait_final(store, [*before, *during, *after], timeout_s=120)
    assert {d["status"] for d in documents.values()} == {"succeeded"}
    assert len(fake_model.seen) == len(set(fake_model.seen)) == 140
    assert json.dumps(store.counts()) == json.dumps(
        {"queued": 0, "running": 0, "succeeded": 140, "failed": 0}
    )


def test_a_worker_process_logs_its_model_at_start_and_a_summary_per_interval(
    job_settings, store, submitter, kit, tmp_path
) -> None:
    settings = job_settings.model_copy(update={"summary_interval_s": 1.0, "sweep_interval_s": 0.5})
    ids = [submitter.submit(kit.array(1, first_pixel=100 + i)).id for i in range(5)]
    log = tmp_path / "worker.log"
    worker = worker_process(settings, kit, log)
    try:
        kit.wait_final(store, ids, timeout_s=60)
        wait_until(
            lambda: "(in all: done 5, failed 0)" in log.read_text(), 30, "a summary after the jobs", worker
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()[-2000:]
    lines = log.read_text().splitlines()
    started = (
        f"INFO worker up: fake-digits version 7 (pinned), queue {settings.job_queue}, prefetch {settings.prefetch}, "
        f"micro-batches of up to {settings.batch_size} rows or {settings.batch_wait_ms} ms"
    )
    assert sum(line.endswith(started) for line in lines) == 1
    summary = next(line for line in lines if "(in all: done 5, failed 0)" in line)
    assert "queue depth main 0, retry 0, dead 0; store 0 queued, 0 running" in summary
