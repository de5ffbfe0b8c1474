"""Job metrics in prometheus_client's default registry, so BentoML's `/metrics` shows them.

BentoML serves `/metrics` from the multiprocess directory (PROMETHEUS_MULTIPROC_DIR): a worker started with
that variable set to the service's directory adds its samples there; otherwise `metrics_port` serves them.
Gauges use the most recent value across processes: every worker reports the same store and broker totals.
"""

from __future__ import annotations

import datetime as dt
import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class JobMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.finished = Counter(
            "nbship_jobs_finished", "Jobs this worker brought to a final state.", ["state"], registry=registry
        )
        self.latency = Histogram(
            "nbship_job_submit_to_done_seconds",
            "From submission to the final state.",
            ["state"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.jobs = Gauge(
            "nbship_jobs",
            "Jobs in the store waiting or running, by state.",
            ["state"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "nbship_job_queue_depth",
            "Ready messages per queue (main, retry, dead).",
            ["queue"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )

    def done(self, state: str, created_at: dt.datetime) -> None:
        self.finished.labels(state).inc()
        self.latency.labels(state).observe((dt.datetime.now(dt.UTC) - created_at).total_seconds())

    def snapshot(self, counts: dict[str, int], depths: dict[str, int]) -> None:
        for state, n in counts.items():
            self.jobs.labels(state).set(n)
        for queue, n in depths.items():
            self.queue_depth.labels(queue).set(n)


@functools.cache
def submit_group_sizes(registry: CollectorRegistry = REGISTRY) -> Histogram:
    """Submissions per group commit in the API (service.jobs.submit); one histogram a process and registry."""
    return Histogram(
        "nbship_job_submit_group_size",
        "Job submissions written in one insert and published in one transaction.",
        buckets=GROUP_BUCKETS,
        registry=registry,
    )
