"""Job submission, independent of HTTP: store first (journaled), then publish with a confirm.

Submissions that arrive together (the API's requests, each in a thread of the server's pool) are committed as a
group (`Groups`): one `insert_many` made durable by one journaled write (store.JobStore.create_many), then one
transaction of publishes (queue.GroupPublisher), and only then does each caller get its answer, so a 202 still
means journaled. Store unreachable: `StoreUnavailable`
for every submission of the group, nothing published. Broker unreachable: the jobs stay `queued` with
`published: false` (an outbox) and a worker's sweeper publishes them once the broker is back. The `published`
marks of confirmed publishes are written in bulk a moment later (`PublishedMarks`), so a submission costs
one journaled write instead of two.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from service.jobs.metrics import submit_group_sizes
from service.jobs.queue import BrokerUnavailable, GroupPublishers, JobMessage
from service.jobs.store import Job, JobStore, StoreUnavailable, Submission, connect_store
from service.models.contract import Rows
from service.settings import JobSettings

log = logging.getLogger(__name__)


T = TypeVar("T")
R = TypeVar("R")


class PublishesGroups(Protocol):
    def publish_group(self, queue: str, bodies: Sequence[bytes]) -> list[bool]: ...


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


class Groups(Generic[T, R]):
    """Group commit for callers in many threads: `commit` runs once for the items that arrived together.

    An item that arrives while no group is in flight goes at once, in a group of its own; those that arrive
    while one is in flight gather, and the first of them leads the next group when that one ends, or when it
    has waited `max_wait_s`, whichever is first (so a slow commit delays the next by at most the wait). At most
    `MAX_IN_FLIGHT` groups run at once, `max_size` items each; the leader runs `commit` in its own thread.
    """

    MAX_IN_FLIGHT = 2  # a second group covers a slow first one; more would only queue at the store

    def __init__(
        self,
        commit: Callable[[list[T]], Sequence[R | Exception]],
        max_size: int,
        max_wait_s: float,
        on_group: Callable[[int], None] | None = None,
    ) -> None:
        self._commit = commit
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._on_group = on_group
        self._changed = threading.Condition()
        self._waiting: deque[_Entry[T, R]] = deque()
        self._in_flight = 0

    def submit(self, item: T) -> R | Exception:
        """The item's outcome: what `commit` gave for it, or the exception it raised (a copy per caller)."""
        entry: _Entry[T, R] = _Entry(item)
        deadline = time.monotonic() + self._max_wait_s
        with self._changed:
            self._waiting.append(entry)
            while not entry.done and not self._leads(entry, deadline):
                remaining = deadline - time.monotonic()
                self._changed.wait(
                    remaining if remaining > 0 and self._in_flight < self.MAX_IN_FLIGHT else None
                )
            if entry.done:
                return entry.outcome
            group = [self._waiting.popleft() for _ in range(min(self._max_size, len(self._waiting)))]
            self._in_flight += 1
            self._changed.notify_all()  # a new head of the queue, if the group was capped
        try:
            outcomes: Sequence[R | Exception] = self._commit([member.item for member in group])
        except Exception as exc:  # every caller raises it, none waits forever
            outcomes = [copy.copy(exc) for _ in group]
        if self._on_group is not None:
            self._on_group(len(group))
        with self._changed:
            self._in_flight -= 1
            for member, outcome in zip(group, outcomes, strict=True):
                member.outcome, member.done = outcome, True
            self._changed.notify_all()
        return entry.outcome

    def _leads(self, entry: _Entry[T, R], deadline: float) -> bool:
        if not self._waiting or self._waiting[0] is not entry:
            return False
        return self._in_flight == 0 or (self._in_flight < self.MAX_IN_FLIGHT and time.monotonic() >= deadline)


class _Entry(Generic[T, R]):
    __slots__ = ("done", "item", "outcome")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.outcome: R | Exception


class JobSubmitter:
    def __init__(
        self,
        store: JobStore,
        publisher: PublishesGroups,
        queue: str,
        mark_interval_s: float = 0.2,
        max_group: int = 64,
        max_wait_s: float = 0.005,
        on_group: Callable[[int], None] | None = None,
    ) -> None:
        """`mark_interval_s`: how often confirmed publishes are marked; below the sweeper's `publish_grace_s`.
        `max_group`, `max_wait_s`: the bounds of a group (see `Groups`); `on_group` hears each group's size."""
        self._store = store
        self._publisher = publisher
        self._queue = queue
        self._marks = PublishedMarks(store, mark_interval_s)
        self._groups: Groups[Submission, Job] = Groups(self._commit, max_group, max_wait_s, on_group)

    def submit(self, rows: Rows, idempotency_key: str | None = None, owner: str = "") -> Job:
        """`rows`: by input name, checked already (service.http.rows, by the job API's body model). Raises StoreUnavailable when
        the store is down, IdempotencyConflict when the key names one of the owner's jobs with other rows."""
        outcome = self._groups.submit(Submission(rows, idempotency_key, owner))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _commit(self, submissions: list[Submission]) -> list[Job | Exception]:
        try:
            outcomes = self._store.create_many(submissions)
        except StoreUnavailable as exc:
            return [StoreUnavailable(str(exc)) for _ in submissions]  # nothing written: nothing to publish
        created = [job for job in outcomes if isinstance(job, Job) and job.created]
        if not created:
            return outcomes  # the first submissions published theirs, or left them to the sweeper
        try:
            taken = self._publisher.publish_group(
                self._queue, [JobMessage(job.id, job.n_rows).encode() for job in created]
            )
        except BrokerUnavailable as exc:
            log.warning("%d jobs stay queued for the sweeper: %s", len(created), exc)
            return outcomes
        for job, confirmed in zip(created, taken, strict=True):
            if confirmed:
                self._marks.add(job.id)
            else:
                log.warning("job %s was returned by the broker and stays queued for the sweeper", job.id)
        return outcomes

    def close(self) -> None:
        """Write the pending published marks; call at shutdown (the store stays open)."""
        self._marks.close()


@contextmanager
def submitting(
    settings: JobSettings, store: JobStore, on_group: Callable[[int], None] | None = None
) -> Iterator[JobSubmitter]:
    """A submitter for a thread pool (a broker connection per group in flight), closed with its connections on
    exit. `on_group` hears each group's size."""
    publishers = GroupPublishers(settings)
    submitter = JobSubmitter(
        store,
        publishers,
        settings.job_queue,
        max_group=settings.submit_group_max,
        max_wait_s=settings.submit_group_wait_ms / 1000,
        on_group=on_group,
    )
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
        with submitting(settings, store, submit_group_sizes().observe) as submitter:
            yield JobBackend(submitter, store)
    finally:
        store.close()
