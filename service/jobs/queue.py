"""RabbitMQ for the job layer: the queues, the job message, and publishers (a confirm each, or a group per
transaction) that reconnect.

Queues (all durable, messages persistent):
- main: the work; a message the worker rejects (malformed) is dead-lettered to the dead-letter queue.
- retry: a failed attempt waits here for its per-message delay, then is dead-lettered back to main.
- dead: jobs out of attempts and malformed messages, for a person to look at.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPChannelError, AMQPConnectionError, AMQPError

from service.settings import JobSettings

log = logging.getLogger(__name__)

PERSISTENT = pika.DeliveryMode.Persistent
T = TypeVar("T")


class BrokerUnavailable(Exception):
    """The broker did not confirm a publish within the reconnect budget."""


class MalformedMessage(ValueError):
    pass


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    n_rows: int

    def encode(self) -> bytes:
        return json.dumps({"job_id": self.job_id, "n_rows": self.n_rows}).encode()

    @classmethod
    def decode(cls, body: bytes) -> JobMessage:
        try:
            data = json.loads(body)
            job_id, n_rows = data["job_id"], data["n_rows"]
        except (ValueError, TypeError, KeyError) as exc:
            raise MalformedMessage(f"not a job message: {body[:80]!r}") from exc
        if not (isinstance(job_id, str) and isinstance(n_rows, int) and not isinstance(n_rows, bool)):
            raise MalformedMessage(f"not a job message: {body[:80]!r}")
        return cls(job_id, n_rows)


def quiet_broker_client() -> None:
    """pika logs an ERROR with a traceback for every failed connection attempt (hundreds a minute while RabbitMQ
    restarts); the job layer reports those failures itself (a warning per job left for the sweeper, or per
    worker reconnect)."""
    logging.getLogger("pika").setLevel(logging.CRITICAL)


def connection_parameters(settings: JobSettings) -> pika.URLParameters:
    parameters = pika.URLParameters(settings.amqp_url)
    # One try per call: the callers own the retry policy (backoff), and a refused connection must fail fast.
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    parameters.blocked_connection_timeout = 30
    return parameters


def declare_queues(channel: BlockingChannel, settings: JobSettings) -> None:
    to = {"x-dead-letter-exchange": ""}
    channel.queue_declare(settings.dead_letter_queue, durable=True)
    channel.queue_declare(
        settings.job_queue,
        durable=True,
        arguments={**to, "x-dead-letter-routing-key": settings.dead_letter_queue},
    )
    channel.queue_declare(
        settings.retry_queue, durable=True, arguments={**to, "x-dead-letter-routing-key": settings.job_queue}
    )


def queue_depths(channel: BlockingChannel, settings: JobSettings) -> dict[str, int]:
    names = {"main": settings.job_queue, "retry": settings.retry_queue, "dead": settings.dead_letter_queue}
    return {
        kind: channel.queue_declare(name, passive=True).method.message_count for kind, name in names.items()
    }


def backoff_delays(first: float = 0.1, cap: float = 5.0) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


class Publisher:
    """Confirmed, persistent publishes on one connection; not thread-safe (pika is not): one per thread."""

    def __init__(self, settings: JobSettings, budget_s: float = 2.0) -> None:
        self._settings = settings
        self._budget_s = budget_s  # how long one publish may spend reconnecting before giving up
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def publish(
        self, queue: str, body: bytes, headers: dict[str, Any] | None = None, expiration_ms: int | None = None
    ) -> None:
        properties = pika.BasicProperties(
            delivery_mode=PERSISTENT,
            content_type="application/json",
            headers=headers,
            expiration=None if expiration_ms is None else str(max(0, expiration_ms)),
        )
        # mandatory: an unroutable message (queue missing) is an error, not a silent drop.
        self._retrying(lambda channel: channel.basic_publish("", queue, body, properties, mandatory=True))

    def _retrying(self, action: Callable[[BlockingChannel], T]) -> T:
        """`action` on an open channel, reconnecting with backoff within the budget, else BrokerUnavailable."""
        deadline = time.monotonic() + self._budget_s
        delays = backoff_delays()
        while True:
            try:
                return action(self._open_channel())
            except (AMQPError, OSError) as exc:
                self.close()
                delay = next(delays)
                if time.monotonic() + delay > deadline:
                    raise BrokerUnavailable(f"broker did not confirm the publish: {exc!r}") from exc
                log.debug("publish failed (%r); reconnecting in %.1fs", exc, delay)
                time.sleep(delay)

    def _open_channel(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = pika.BlockingConnection(connection_parameters(self._settings))
            channel = self._connection.channel()
            self._prepare(channel)
            declare_queues(channel, self._settings)
            self._channel = channel
        return self._channel

    def _prepare(self, channel: BlockingChannel) -> None:
        channel.confirm_delivery()

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with suppress(AMQPConnectionError, AMQPChannelError, OSError):  # already gone: nothing to release
                connection.close()


class GroupPublisher(Publisher):
    """Persistent publishes a group at a time: all of them written, then one wait, on a transactional channel.

    A confirm channel of pika's BlockingChannel waits for each message's confirm in turn. RabbitMQ's
    `tx.commit-ok` answers for every message of the transaction at once: from then on each is the broker's
    (written for a persistent message to a durable queue), as a confirm says of one; a message no queue takes
    is returned on commit, before the commit-ok (rabbitmq.com/docs/semantics). A commit that fails hands
    nothing over (the channel's transaction is dropped), so the whole group is published again, or reported
    unconfirmed. Not thread-safe: one group at a time.
    """

    def __init__(self, settings: JobSettings, budget_s: float = 2.0) -> None:
        super().__init__(settings, budget_s)
        self._returned: list[bytes] = []  # bodies the broker returned (no queue took them) in this group

    def publish_group(self, queue: str, bodies: Sequence[bytes]) -> list[bool]:
        """Publish `bodies` to `queue`; for each, whether the broker took it. BrokerUnavailable when the group
        was not committed within the budget."""
        properties = pika.BasicProperties(delivery_mode=PERSISTENT, content_type="application/json")

        def publish(channel: BlockingChannel) -> None:
            self._returned.clear()
            for body in bodies:
                channel.basic_publish("", queue, body, properties, mandatory=True)
            channel.tx_commit()
            # Returns arrive before the commit-ok; pika hands them to the callback while it processes events.
            assert self._connection is not None
            self._connection.process_data_events(time_limit=0)

        self._retrying(publish)
        lost = set(self._returned)
        return [body not in lost for body in bodies]

    def _prepare(self, channel: BlockingChannel) -> None:
        channel.tx_select()
        channel.add_on_return_callback(
            lambda _channel, _method, _properties, body: self._returned.append(body)
        )


class GroupPublishers:
    """Group publishers for callers in several threads: each call takes one that is free (or a new one), so
    concurrent groups never share a channel; as many connections as groups were ever in flight at once."""

    def __init__(self, settings: JobSettings, budget_s: float = 2.0) -> None:
        self._settings = settings
        self._budget_s = budget_s
        self._free: list[GroupPublisher] = []
        self._all: list[GroupPublisher] = []
        self._lock = threading.Lock()

    def publish_group(self, queue: str, bodies: Sequence[bytes]) -> list[bool]:
        with self._lock:
            if self._free:
                publisher = self._free.pop()
            else:
                publisher = GroupPublisher(self._settings, self._budget_s)
                self._all.append(publisher)
        try:
            return publisher.publish_group(queue, bodies)
        finally:
            with self._lock:
                self._free.append(publisher)

    def close(self) -> None:
        with self._lock:
            publishers, self._all, self._free = self._all, [], []
        for publisher in publishers:
            publisher.close()
