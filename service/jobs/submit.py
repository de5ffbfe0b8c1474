"""Job submission, independent of HTTP: store first (journaled), then publish with a confirm.

Store unreachable: `StoreUnavailable`, nothing published. Broker unreachable: the job stays `queued` with
`published: false` (an outbox) and a worker's sweeper publishes it once the broker is back. The `published`
marks of confirmed publishes are written in bulk a moment later (`PublishedMarks`), so a submission costs
one journaled write instead of two.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.jobs.queue import BrokerUnavailable, JobMessage, ThreadPublishers
from service.jobs.settings import JobSettings
from service.jobs.store import Job, JobStore, StoreUnavailable, connect_store

log = logging.getLogger(__name__)


class Publishes(Protocol):
    def publish(self, queue: str, body: bytes) -> None: ...


class PublishedMarks:
    """Marks confirmed publishes in the store, one bulk update per interval from a background thread.

    A per-job update would cost the store as much as the insert. A mark that is never written (the process
    ends first, the store is down) costs only a duplicate publish by the sweeper after its grace period,
    which the worker absorbs; so the interval only has to stay well below `publish_grace_s`.
    """

    def __init__(self, store: JobStore, interval_s: float) -> None:
        self._store = store
        self._interval_s = interval_s
        self._ids: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, job_id: str) -> None:
        with self._lock:
            self._ids.append(job_id)
            if self._thread is None and not self._stop.is_set():  # started on first use, not at construction
                self._thread = threading.Thread(target=self._run, name="published-marks", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        with self._lock:
            ids, self._ids = self._ids, []
        if ids:
            try:
                self._store.mark_published(ids)
            except StoreUnavailable as exc:
                log.warning("%d jobs stay unmarked, the sweeper will publish them again: %s", len(ids), exc)

    def close(self) -> None:
        """Stop the thread and write what is pending."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()


class JobSubmitter:
    def __init__(
        self,
        store: JobStore,
        publisher: Publishes,
        queue: str,
        mark_interval_s: float = 0.2,
    ) -> None:
        """`mark_interval_s`: how often confirmed publishes are marked; below the sweeper's `publish_grace_s`."""
        self._store = store
        self._publisher = publisher
        self._queue = queue
        self._marks = PublishedMarks(store, mark_interval_s)

    def submit(self, rows: np.ndarray, idempotency_key: str | None = None, owner: str = "") -> Job:
        """`rows`: checked already (service.requests, by the job API's body model). Raises StoreUnavailable when
        the store is down, IdempotencyConflict when the key names one of the owner's jobs with other rows."""
        job = self._store.create(rows, idempotency_key, owner=owner)
        if not job.created:
            return job  # the first submission published it, or left it to the sweeper
        try:
            self._publisher.publish(self._queue, JobMessage(job.id, job.n_rows).encode())
        except BrokerUnavailable as exc:
            log.warning("job %s stays queued for the sweeper: %s", job.id, exc)
            return job
        self._marks.add(job.id)
        return job

    def close(self) -> None:
        """Write the pending published marks; call at shutdown (the store stays open)."""
        self._marks.close()


@contextmanager
def submitting(settings: JobSettings, store: JobStore) -> Iterator[JobSubmitter]:
    """A submitter for a thread pool (one broker connection per thread), closed with its connections on exit."""
    publishers = ThreadPublishers(settings)
    submitter = JobSubmitter(store, publishers, settings.job_queue)
    try:
        yield submitter
    finally:
        submitter.close()
        publishers.close()


@dataclass(frozen=True)
class JobBackend:
    """What the job API needs: a submitter and the store it writes to."""

    submitter: JobSubmitter
    store: JobStore


@contextmanager
def open_jobs(settings: JobSettings) -> Iterator[JobBackend]:
    """The store and a submitter, closed on exit. Opening reaches no server: one that is down fails the
    requests that need it (StoreUnavailable), never the process that opens them."""
    store = connect_store(settings)
    try:
        with submitting(settings, store) as submitter:
            yield JobBackend(submitter, store)
    finally:
        store.close()
