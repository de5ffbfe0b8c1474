"""What a job worker tells the person running it: one line when it starts (the model it answers with, its queue,
prefetch and micro-batch bounds) and, at INFO, a one-line summary every SUMMARY_INTERVAL_S (jobs done and
failed since the last one and in all, the queues' depths, the store's backlog)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter

from prometheus_client import REGISTRY, CollectorRegistry

from service.jobs.metrics import JobMetrics
from service.settings import JobSettings


def startup_line(
    model_name: str, model_version: str, mode: str, settings: JobSettings, runtime: str | None = None
) -> str:
    served = f"{mode}, {runtime}" if runtime else mode
    return (
        f"worker up: {model_name} version {model_version} ({served}), queue {settings.job_queue}, "
        f"prefetch {settings.prefetch}, micro-batches of up to {settings.batch_size} rows or "
        f"{settings.batch_wait_ms} ms"
    )


class SummarizingMetrics(JobMetrics):
    """The worker's metrics, which also count what they are told and log it once per interval.

    The worker reports every final state (`done`) and, each sweep, the backlog and queue depths (`snapshot`):
    the summary rides on the sweep, so it needs no thread or timer of its own.
    """

    def __init__(
        self, interval_s: float, log: logging.Logger, registry: CollectorRegistry = REGISTRY
    ) -> None:
        super().__init__(registry)
        self._interval_s = interval_s
        self._log = log
        self._total: Counter[str] = Counter()
        self._since: Counter[str] = Counter()
        self._next = time.monotonic() + interval_s

    def done(self, state: str, created_at: dt.datetime) -> None:
        super().done(state, created_at)
        self._total[state] += 1
        self._since[state] += 1

    def snapshot(self, counts: dict[str, int], depths: dict[str, int]) -> None:
        super().snapshot(counts, depths)
        if time.monotonic() >= self._next:
            self._log.info(self.summary(counts, depths))
            self._since.clear()
            self._next = time.monotonic() + self._interval_s

    def summary(self, counts: dict[str, int], depths: dict[str, int]) -> str:
        since, total = self._since, self._total
        queues = ", ".join(f"{queue} {n}" for queue, n in depths.items())
        backlog = ", ".join(f"{n} {state}" for state, n in counts.items())
        return (
            f"worker: jobs done {since['succeeded']}, failed {since['failed']} in the last {self._interval_s:g} s "
            f"(in all: done {total['succeeded']}, failed {total['failed']}); queue depth {queues}; store {backlog}"
        )
