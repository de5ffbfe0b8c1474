"""Group commit of concurrent submissions on real servers: fewer inserts, and the contract of each job unchanged
(journaled before the answer, published or left to the sweeper, 503 with nothing published, idempotency keys)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika
import pytest
from support.processes import free_port

from service.jobs.queue import GroupPublisher, GroupPublishers, JobMessage, declare_queues
from service.jobs.store import IdempotencyConflict, Job, JobStore, StoreUnavailable, Submission, connect_store
from service.jobs.submit import JobSubmitter
from service.settings import JobSettings


class GatedStore:
    """The real store, whose first `create_many` waits for `gate`: the submissions that arrive meanwhile
    gather into the next group, whatever the machine's speed. Counts the inserts."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self.gate = threading.Event()
        self.inserts: list[int] = []

    def create_many(self, submissions: list[Submission]) -> list[Job | Exception]:
        self.inserts.append(len(submissions))
        if len(self.inserts) == 1:
            assert self.gate.wait(30)
        return self._store.create_many(submissions)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def messages(settings: JobSettings) -> list[str]:
    """The job ids in the main queue, taken off it."""
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    channel = connection.channel()
    ids = []
    while (got := channel.basic_get(settings.job_queue, auto_ack=True))[0] is not None:
        ids.append(JobMessage.decode(got[2]).job_id)
    connection.close()
    return ids


def declared(settings: JobSettings) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    declare_queues(connection.channel(), settings)
    connection.close()


def test_concurrent_submissions_share_inserts_and_each_is_journaled_and_published(
    job_settings, store, kit
) -> None:
    groups: list[int] = []
    publishers = GroupPublishers(job_settings)
    submitter = JobSubmitter(
        store, publishers, job_settings.job_queue, mark_interval_s=60, on_group=groups.append
    )
    start = threading.Barrier(48)

    def submit(i: int) -> tuple[Job, dict | None]:
        start.wait()
        job = submitter.submit(kit.array(1, first_pixel=100 + i))
        return job, store.get(job.id)  # read at once: the answer came after the journaled insert

    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(submit, range(48)))
    submitter.close()
    publishers.close()
    assert sum(groups) == 48 and len(groups) <= 12, groups  # a first group, then the ones that gathered
    jobs = [job for job, _ in answers]
    assert all(job.created and document is not None for job, document in answers)
    assert sorted(messages(job_settings)) == sorted(job.id for job in jobs)  # each published once
    assert {store._jobs.find_one({"_id": job.id})["published"] for job in jobs} == {True}


def test_one_group_answers_each_submission_alone_duplicate_keys_and_conflicts_included(
    job_settings, store, kit
) -> None:
    gated = GatedStore(store)
    groups: list[int] = []
    publishers = GroupPublishers(job_settings)
    submitter = JobSubmitter(
        gated,
        publishers,
        job_settings.job_queue,
        max_wait_s=30,
        on_group=groups.append,  # type: ignore[arg-type]
    )
    rows = kit.array(2, first_pixel=7)
    calls = [
        lambda: submitter.submit(kit.array(1, first_pixel=1)),  # leads the first group, held at the store
        lambda: submitter.submit(rows, "order-1"),
        lambda: submitter.submit(
            {"pixels": rows["pixels"].copy()}, "order-1"
        ),  # the same key and rows, one group
        lambda: submitter.submit(
            {"pixels": rows["pixels"] + 1}, "order-1"
        ),  # the same key, other rows: a conflict
        lambda: submitter.submit(kit.array(1, first_pixel=2)),
    ]
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(calls[0])]
        time.sleep(0.5)  # the first group is in flight, held
        futures += [pool.submit(call) for call in calls[1:]]
        time.sleep(0.5)  # the others wait for it: their wait is longer than the test
        gated.gate.set()
        first, keyed, again, conflict, plain = (future.exception() or future.result() for future in futures)
    submitter.close()
    publishers.close()
    assert gated.inserts == [1, 4] and groups == [1, 4]
    assert isinstance(conflict, IdempotencyConflict) and conflict.job_id == keyed.id
    assert keyed.id == again.id and {keyed.created, again.created} == {True, False}
    assert first.created and plain.created
    assert sorted(messages(job_settings)) == sorted([first.id, keyed.id, plain.id])  # the keyed job once
    assert store.get(keyed.id)["n_rows"] == 2


def test_store_down_fails_every_submission_of_a_group_and_publishes_nothing(job_settings, kit) -> None:
    down = job_settings.model_copy(
        update={"mongo_url": f"mongodb://127.0.0.1:{free_port()}", "mongo_timeout_ms": 300}
    )
    declared(down)
    store = connect_store(down)
    groups: list[int] = []
    publishers = GroupPublishers(down)
    submitter = JobSubmitter(store, publishers, down.job_queue, on_group=groups.append)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(submitter.submit, kit.array(1)) for _ in range(16)]
        errors = [future.exception() for future in futures]
    submitter.close()
    publishers.close()
    store.close()
    assert all(isinstance(error, StoreUnavailable) for error in errors)
    assert len(groups) < 16  # they were grouped, and all of each group failed
    assert kit.queue_depth(down, down.job_queue) == 0


def test_broker_down_leaves_a_group_unpublished_until_the_sweeper_publishes_it(
    job_settings, store, fake_model, start_worker, kit
) -> None:
    no_broker = job_settings.model_copy(
        update={"amqp_url": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"}
    )
    groups: list[int] = []
    publishers = GroupPublishers(no_broker, budget_s=0.3)
    submitter = JobSubmitter(store, publishers, no_broker.job_queue, on_group=groups.append)
    with ThreadPoolExecutor(16) as pool:
        jobs = list(pool.map(lambda i: submitter.submit(kit.array(1, first_pixel=100 + i)), range(16)))
    submitter.close()
    publishers.close()
    assert len(groups) < 16
    ids = [job.id for job in jobs]
    assert all(job.created and job.status == "queued" for job in jobs)
    assert {store._jobs.find_one({"_id": job_id})["published"] for job_id in ids} == {False}
    start_worker(fake_model)  # its sweeper publishes them once the grace period is over
    documents = kit.wait_final(store, ids, timeout_s=30)
    assert {document["status"] for document in documents.values()} == {"succeeded"}
    assert sorted(fake_model.seen) == [100.0 + i for i in range(16)]


@pytest.mark.parametrize("routable", [True, False])
def test_a_group_publish_reports_each_message(job_settings, routable) -> None:
    declared(job_settings)
    queue = job_settings.job_queue if routable else f"{job_settings.job_queue}.missing"
    publisher = GroupPublisher(job_settings)
    bodies = [JobMessage(f"{i:032x}", 1).encode() for i in range(3)]
    try:
        assert publisher.publish_group(queue, bodies) == [routable] * 3  # unroutable: returned, not taken
        assert publisher.publish_group(queue, bodies[:1]) == [routable]  # the channel goes on
    finally:
        publisher.close()
    assert len(messages(job_settings)) == (4 if routable else 0)
