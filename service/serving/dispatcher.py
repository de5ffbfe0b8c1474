"""Adaptive batching of the routes that predict (`POST /predict`, the Open Inference Protocol's `infer`): one
batch in flight per worker, and the requests that arrive meanwhile form the next one (as the job API's group
commit does for `POST /jobs`).

The service calls it for each request, `dispatcher(callback)(data)`, the callback taking a list of requests'
inputs and giving one output each (the signature of BentoML's own CorkDispatcher, which held requests back to
fill batches by a latency model it trains on the first calls, answering 503 meanwhile under any load, and polled
its queue every millisecond: docs/benchmarks/serve.md).

A request that finds no batch in flight starts one; before a batch is taken, the event loop gets a couple of
turns to bring in the requests already waiting in its sockets, as long as those turns bring more (`_gather`).
While a batch runs, arrivals queue, and the next batch takes them all, up to `max_batch_size` rows. So batches
grow with the load and a lone request waits two turns of the loop. `max_latency_ms` stays a hard bound: a request
still queued that long gets the fallback's answer (503, "process is overloaded").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

_EXPIRED = object()
TURNS_PER_LOOK = 2  # a turn of the event loop reads a request, the next runs its handler up to the queue


class BatchDispatcher:
    def __init__(
        self,
        max_latency_in_ms: float,
        max_batch_size: int,
        *,
        fallback: Callable[[], Any],
        get_batch_size: Callable[[Any], int],
    ) -> None:
        self.max_latency_s = max_latency_in_ms / 1000
        self.max_batch_size = int(max_batch_size)
        self.fallback = fallback
        self.get_batch_size = get_batch_size
        self.callback: Callable[[Sequence[Any]], Awaitable[Sequence[Any]]] | None = None
        # arrival, rows, data, answer
        self._queue: deque[tuple[float, int, Any, asyncio.Future[Any]]] = deque()
        self._running: asyncio.Task[None] | None = None

    def __call__(self, callback: Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]) -> Callable[[Any], Any]:
        self.callback = callback  # BentoML passes the same batch function again on each request
        return self.submit

    async def submit(self, data: Any) -> Any:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self._queue.append((loop.time(), self.get_batch_size(data), data, answer))
        if self._running is None:
            # Started on the next turn of the loop: the requests read in this one join the batch.
            self._running = loop.create_task(self._run())
        result = await answer
        if result is _EXPIRED:
            return self.fallback()
        if isinstance(result, Exception):
            raise result
        return result

    def shutdown(self) -> None:
        if self._running is not None:
            self._running.cancel()
        for _, _, _, answer in self._queue:
            answer.cancel()

    async def _run(self) -> None:
        try:
            while self._queue:
                await self._gather()
                batch = self._take()
                if batch:
                    await self._answer(batch)
        finally:
            self._running = None

    async def _gather(self) -> None:
        """Let the loop bring in what has arrived before a batch is taken, while it keeps bringing requests.

        A request whose bytes are already in the socket needs a turn of the loop to be read and parsed and the next
        for its handler to reach the queue; while the model ran on the loop (service/model_calls.py), nothing was
        read. So the batch waits two turns at a time, as long as those turns added requests, up to a full batch:
        under load it takes every connection's request, and a lone request waits two turns (microseconds)."""
        queued = -1
        while queued != len(self._queue) and self._queued_rows() < self.max_batch_size:
            queued = len(self._queue)
            for _ in range(TURNS_PER_LOOK):
                await asyncio.sleep(0)

    def _queued_rows(self) -> int:
        return sum(size for _, size, _, _ in self._queue)

    def _take(self) -> list[tuple[Any, asyncio.Future[Any]]]:
        """The next batch: queued requests in order, up to `max_batch_size` rows (a larger request alone); those
        queued longer than the latency bound get the fallback, those whose caller left are dropped."""
        oldest = asyncio.get_running_loop().time() - self.max_latency_s
        batch: list[tuple[Any, asyncio.Future[Any]]] = []
        rows = 0
        while self._queue:
            arrived, size, data, answer = self._queue[0]
            if answer.done():  # cancelled: its request timed out or its client went away
                self._queue.popleft()
            elif arrived < oldest:
                self._queue.popleft()
                answer.set_result(_EXPIRED)
            elif batch and rows + size > self.max_batch_size:
                break
            else:
                self._queue.popleft()
                batch.append((data, answer))
                rows += size
        return batch

    async def _answer(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        assert self.callback is not None
        try:
            outputs: Sequence[Any] = await self.callback([data for data, _ in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(
                    f"the batch function gave {len(outputs)} outputs for {len(batch)} requests"
                )
        except Exception as exc:  # each request of the batch fails with it
            outputs = [exc] * len(batch)
        for (_, answer), output in zip(batch, outputs, strict=True):
            if not answer.done():
                answer.set_result(output)
