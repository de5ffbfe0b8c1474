"""RabbitMQ for the job layer: the queues, the job message, and a publisher with confirms that reconnects.

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
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPChannelError, AMQPConnectionError, AMQPError

from service.jobs.settings import JobSettings

log = logging.getLogger(__name__)

PERSISTENT = pika.DeliveryMode.Persistent


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
        deadline = time.monotonic() + self._budget_s
        delays = backoff_delays()
        while True:
            try:
                channel = self._open_channel()
                # mandatory: an unroutable message (queue missing) is an error, not a silent drop.
                channel.basic_publish("", queue, body, properties, mandatory=True)
                return
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
            channel.confirm_delivery()
            declare_queues(channel, self._settings)
            self._channel = channel
        return self._channel

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with suppress(AMQPConnectionError, AMQPChannelError, OSError):  # already gone: nothing to release
                connection.close()


class ThreadPublishers:
    """One Publisher per calling thread, for submitters served from a thread pool."""

    def __init__(self, settings: JobSettings, budget_s: float = 2.0) -> None:
        self._settings = settings
        self._budget_s = budget_s
        self._local = threading.local()
        self._all: list[Publisher] = []
        self._lock = threading.Lock()

    def get(self) -> Publisher:
        publisher = getattr(self._local, "publisher", None)
        if publisher is None:
            publisher = self._local.publisher = Publisher(self._settings, self._budget_s)
            with self._lock:
                self._all.append(publisher)
        return publisher

    def publish(self, queue: str, body: bytes) -> None:
        self.get().publish(queue, body)

    def close(self) -> None:
        with self._lock:
            publishers, self._all = self._all, []
        for publisher in publishers:
            publisher.close()
