"""The worker's log: one start-up line, then a summary per interval riding on the sweep's snapshot."""

import datetime as dt
import logging

from prometheus_client import CollectorRegistry

from service.jobs.worker_log import SummarizingMetrics, startup_line
from service.settings import JobSettings


def test_startup_line_names_model_queue_prefetch_and_batch_bounds():
    settings = JobSettings(_env_file=None, job_queue="q", prefetch=32, batch_size=128, batch_wait_ms=5)
    assert startup_line("digits-classifier", "3", "following @champion", settings) == (
        "worker up: digits-classifier version 3 (following @champion), queue q, prefetch 32, micro-batches of up to 128 rows or 5 ms"
    )


def test_a_summary_per_interval_counts_since_the_last_and_in_all(caplog):
    log = logging.getLogger("test.worker")
    metrics = SummarizingMetrics(interval_s=0.0, log=log, registry=CollectorRegistry())
    now = dt.datetime.now(dt.UTC)
    with caplog.at_level(logging.INFO, logger="test.worker"):
        metrics.done("succeeded", now)
        metrics.done("failed", now)
        metrics.snapshot({"queued": 4, "running": 1}, {"main": 3, "retry": 1, "dead": 1})
        metrics.done("succeeded", now)
        metrics.snapshot({"queued": 0, "running": 0}, {"main": 0, "retry": 0, "dead": 1})
    assert [record.getMessage() for record in caplog.records] == [
        "worker: jobs done 1, failed 1 in the last 0 s (in all: done 1, failed 1); "
        "queue depth main 3, retry 1, dead 1; store 4 queued, 1 running",
        "worker: jobs done 1, failed 0 in the last 0 s (in all: done 2, failed 1); "
        "queue depth main 0, retry 0, dead 1; store 0 queued, 0 running",
    ]


def test_no_summary_before_the_interval(caplog):
    metrics = SummarizingMetrics(
        interval_s=3600, log=logging.getLogger("test.quiet"), registry=CollectorRegistry()
    )
    with caplog.at_level(logging.INFO, logger="test.quiet"):
        metrics.snapshot({}, {})
    assert caplog.records == []
