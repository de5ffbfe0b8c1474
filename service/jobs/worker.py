"""The job worker: `python -m service.jobs.worker`.

Consume with prefetch N -> gather a micro-batch (up to B rows or T ms) -> claim the jobs atomically ->
predict once for the whole batch -> write every result in one bulk write -> ack. Acks come only after the
store has the outcome, so a crash at any point leaves the message to be redelivered; a redelivery of a
finished job, or of one another worker holds, is acked without work. A sweeper in the same loop requeues
expired leases and publishes jobs whose publish was never confirmed. SIGTERM finishes the batch in hand.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError

from service.evidence.records import Call, Recorder
from service.jobs.metrics import JobMetrics
from service.jobs.queue import (
    BrokerUnavailable,
    JobMessage,
    MalformedMessage,
    Publisher,
    backoff_delays,
    connection_parameters,
    declare_queues,
    queue_depths,
    quiet_broker_client,
)
from service.jobs.store import ClaimedJob, JobStore, Outcome, StoreUnavailable
from service.models.contract import Outputs, Rows, conform_rows, join_rows, rows_in
from service.models.quiet import quiet
from service.models.source import Model as Predictor
from service.models.source import ModelSource
from service.settings import JobSettings, WorkerSettings, named_after

log = logging.getLogger(__name__)

LEASE_EXPIRED = "the worker stopped during every attempt (lease expired)"  # MAX_LEASE_LOSSES times
BACKLOG = ("queued", "running")


@dataclass(frozen=True)
class Delivery:
    tag: int
    message: JobMessage | None  # None: malformed, to be dead-lettered

    @classmethod
    def of(cls, tag: int, body: bytes) -> Delivery:
        try:
            return cls(tag, JobMessage.decode(body))
        except MalformedMessage as exc:
            log.warning("dead-lettering a malformed message: %s", exc)
            return cls(tag, None)

    @property
    def rows(self) -> int:
        """Rows the message announces; a malformed one counts as one, to be taken and rejected."""
        return max(1, self.message.n_rows) if self.message else 1


@dataclass(frozen=True)
class Failure:
    job: ClaimedJob
    error: str


class Worker:
    def __init__(
        self,
        settings: JobSettings,
        store: JobStore,
        models: ModelSource[Any] | Predictor,
        metrics: JobMetrics,
        stop: threading.Event | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        """`models`: the source that says which model answers (service.models.source, as for the API), or one
        fixed model; `recorder`: where each finished job is recorded (service/evidence/records.py)."""
        self._settings = settings
        self._recorder = recorder
        self._store = store
        self._models: ModelSource[Any] = models if isinstance(models, ModelSource) else ModelSource(models)
        self._metrics = metrics
        self.metrics_registry = metrics.registry
        self.stop = stop or threading.Event()
        self._publisher = Publisher(settings, budget_s=10.0)

    def run(self) -> None:
        """Serve until `stop` is set, reconnecting with backoff when the broker or the store goes away."""
        delays = backoff_delays(first=0.2, cap=5.0)
        while not self.stop.is_set():
            try:
                self._serve()
            except (AMQPError, OSError, BrokerUnavailable, StoreUnavailable) as exc:
                # Closing the connection hands every unacked message back to the broker.
                delay = next(delays)
                log.warning("worker lost a server (%r); reconnecting in %.1fs", exc, delay)
                self.stop.wait(delay)
        self._publisher.close()

    def _serve(self) -> None:
        connection = pika.BlockingConnection(connection_parameters(self._settings))
        try:
            channel = connection.channel()
            declare_queues(channel, self._settings)
            self._store.ensure_indexes()
            channel.basic_qos(prefetch_count=self._settings.prefetch)
            pending: deque[Delivery] = deque()
            channel.basic_consume(
                self._settings.job_queue,
                lambda _ch, method, _props, body: pending.append(Delivery.of(method.delivery_tag, body)),
            )
            next_sweep = 0.0
            while not self.stop.is_set():
                if time.monotonic() >= next_sweep:
                    self._sweep(channel)
                    next_sweep = time.monotonic() + self._settings.sweep_interval_s
                connection.process_data_events(time_limit=0 if pending else 0.2)
                if pending:
                    self._process(channel, self._gather(connection, pending))
        finally:
            if connection.is_open:
                connection.close()

    def _gather(self, connection: pika.BlockingConnection, pending: deque[Delivery]) -> list[Delivery]:
        """Up to B rows (at least one message), waiting at most T ms for more to arrive."""
        limit = self._settings.batch_size
        deadline = time.monotonic() + self._settings.batch_wait_ms / 1000
        while sum(d.rows for d in pending) < limit and (remaining := deadline - time.monotonic()) > 0:
            connection.process_data_events(time_limit=remaining)
        batch = [pending.popleft()]
        rows = batch[0].rows
        while pending and rows + pending[0].rows <= limit:
            rows += pending[0].rows
            batch.append(pending.popleft())
        return batch

    def _process(self, channel: BlockingChannel, batch: list[Delivery]) -> None:
        job_ids = [delivery.message.job_id for delivery in batch if delivery.message]
        claimed = self._store.claim(sorted(set(job_ids))) if job_ids else []
        model = self._models.current  # once: the whole batch is answered by one version, and says which
        outcomes, failures, calls = self._predict(claimed, model)
        written = self._store.succeed(outcomes, {"name": model.name, "version": model.version})
        for outcome in outcomes:
            self._metrics.done("succeeded", outcome.job.created_at)
        if self._recorder is not None and written == len(outcomes):
            self._record(outcomes, calls)
        for failure in failures:
            self._give_back(failure)
        # A result that did not land lost its claim: to a worker that took over an expired lease (whose own
        # message finishes the job), or in a store crash that lost the unjournaled claim (the job is queued
        # again and only this message announces it). The store cannot say which, so those messages go back to
        # the queue: a redelivery finds the job finished or held and is acked, or claims it.
        unsure = {outcome.job.id for outcome in outcomes} if written < len(outcomes) else set()
        # Unclaimed jobs are finished, held by a live claim, or unknown: nothing to do for their messages.
        for delivery in batch:
            if delivery.message is None:
                channel.basic_reject(delivery.tag, requeue=False)
            elif delivery.message.job_id in unsure:
                channel.basic_nack(delivery.tag, requeue=True)
            else:
                channel.basic_ack(delivery.tag)

    def _predict(
        self, claimed: list[ClaimedJob], model: Predictor
    ) -> tuple[list[Outcome], list[Failure], list[tuple[Call, int]]]:
        """Each job's outcome or failure, and for each outcome the model call that answered it (and which of
        the call's jobs it was)."""
        if not claimed:
            return [], [], []
        contract = model.contract
        try:
            outputs = self._checked_predict(join_rows([job.rows for job in claimed]), model)
        except Exception as exc:
            if len(claimed) == 1:
                return [], [Failure(claimed[0], f"{type(exc).__name__}: {exc}")], []
            # One bad job must not fail its batch: find it by predicting each job alone.
            outcomes: list[Outcome] = []
            failures: list[Failure] = []
            calls: list[tuple[Call, int]] = []
            for job in claimed:
                done, failed, called = self._predict([job], model)
                outcomes += done
                failures += failed
                calls += called
            return outcomes, failures, calls
        counts = [rows_in(job.rows) for job in claimed]
        answers = contract.answers(outputs, counts)
        call = Call(model, outputs, counts)
        return (
            [
                Outcome(job, answer) for job, answer in zip(claimed, answers, strict=True)
            ],  # as /predict answers
            [],
            [(call, i) for i in range(len(claimed))],
        )

    def _record(self, outcomes: list[Outcome], calls: list[tuple[Call, int]]) -> None:
        """Each job under its id; its latency from submission to result."""
        assert self._recorder is not None
        now = time.time()
        for outcome, (call, i) in zip(outcomes, calls, strict=True):
            job = outcome.job
            latency = max(0.0, now - job.created_at.timestamp())
            self._recorder.add(job.id, "job", call, i, job.rows, latency)

    @staticmethod
    def _checked_predict(rows: Rows, model: Predictor) -> Outputs:
        """The outputs, or ContractError (rows of other inputs than the model's, answers that break it)."""
        contract = model.contract
        return contract.check_outputs(model.predict(conform_rows(contract, rows)), rows_in(rows))

    def _give_back(self, failure: Failure) -> None:
        """Retry later with a doubled delay, or fail for good into the dead-letter queue."""
        job, settings = failure.job, self._settings
        if job.attempts >= settings.max_attempts:
            self._dead_letter(failure)
            return
        if self._store.retry(job, failure.error):
            delay_ms = int(1000 * settings.retry_delay_s * 2 ** (job.attempts - 1))
            message = JobMessage(job.id, rows_in(job.rows)).encode()
            self._publisher.publish(settings.retry_queue, message, expiration_ms=delay_ms)

    def _dead_letter(self, failure: Failure, lease_lost: bool = False) -> None:
        """Fail for good (`lease_lost`: the last allowed lease ran out) and dead-letter the message."""
        job = failure.job
        if self._store.fail(job, failure.error, lease_lost=lease_lost):
            headers = {
                "error": failure.error[:500],
                "attempts": job.attempts,
                "lease_losses": job.lease_losses + lease_lost,
            }
            message = JobMessage(job.id, rows_in(job.rows)).encode()
            self._publisher.publish(self._settings.dead_letter_queue, message, headers=headers)
            self._metrics.done("failed", job.created_at)

    def _sweep(self, channel: BlockingChannel) -> None:
        # Out of lease budget (the job's worker died every time): failed and dead-lettered, as a job whose every
        # prediction failed is, with a reason that says so.
        for job in self._store.expired_out_of_lease_budget():
            self._dead_letter(Failure(job, LEASE_EXPIRED), lease_lost=True)
        if requeued := self._store.requeue_expired():
            log.warning("expired leases: %d jobs queued again", requeued)
        unpublished = self._store.unpublished()
        for document in unpublished:
            message = JobMessage(document["_id"], document["n_rows"]).encode()
            self._publisher.publish(self._settings.job_queue, message)
        if unpublished:
            self._store.mark_published([document["_id"] for document in unpublished])
        # Only the backlog: finished jobs are counted by `finished`, and their count grows without bound.
        self._metrics.snapshot(self._store.counts(BACKLOG), queue_depths(channel, self._settings))


def packaged_source(settings: WorkerSettings) -> ModelSource[Any]:
    """The packaged model (the BentoML store; in an image, the Bento's own), as the API beside it serves it,
    following the registry's alias when FOLLOW_ALIAS says so."""
    from service.models.source import model_source, prometheus_reporter
    from service.serving.packaged import load_packaged

    packaged = load_packaged(
        settings.bento_model_tag,
        serve_runtime=settings.serve_runtime,
        intra_op_threads=settings.tf_intra_op_threads,
        inter_op_threads=settings.tf_inter_op_threads,
    )
    return model_source(packaged, named_after(settings, packaged.name), on_change=prometheus_reporter())


def configure_logging() -> None:
    """Other libraries at WARNING; the worker's own start-up line and summaries at INFO (NBSHIP_VERBOSE=1: all)."""
    quiet()
    verbose = os.environ.get("NBSHIP_VERBOSE") == "1"
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        quiet_broker_client()


def run(settings: WorkerSettings, models: ModelSource[Any]) -> int:
    """Serve jobs with `models` until SIGTERM or SIGINT, which finish the batch in hand."""
    from service.jobs.store import connect_store
    from service.jobs.worker_log import SummarizingMetrics, startup_line

    metrics = SummarizingMetrics(settings.summary_interval_s, log)
    recorder = Recorder(settings) if settings.evidence else None
    worker = Worker(settings, connect_store(settings), models, metrics, recorder=recorder)
    current = models.current
    runtime = getattr(current, "runtime", None)  # a LoadedModel's; a test's stand-in model has none
    log.info(startup_line(current.name, current.version, models.status.mode, settings, runtime))
    if settings.metrics_port and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop.set())
    worker.run()
    if recorder is not None:
        recorder.close()
    return 0


def _exit_before_work(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.jobs.worker", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    # A container's PID 1 ignores the signals it has no handler for: a stop while TensorFlow and the model load
    # would wait out its whole grace period. Nothing is in hand yet, so SIGTERM ends the process until the worker
    # runs; from then on it finishes the micro-batch in hand (`run`).
    signal.signal(signal.SIGTERM, _exit_before_work)
    configure_logging()
    settings = WorkerSettings()
    return run(settings, packaged_source(settings))


if __name__ == "__main__":
    raise SystemExit(main())
