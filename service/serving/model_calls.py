"""Where `/predict` calls the model: on the worker's event loop while calls of that size have been short, in a
thread once they are not.

A sync API costs each batch a hop into a thread and back, a measurable share of a small model's request
(docs/benchmarks/serve.md). Called on the event loop, a model call blocks the loop for its length: no harm for a
call of a millisecond or two, a stall of every connection for a heavy model's batch. So each call is timed by the
model and the batch's size (rows, in powers of two), and the next call of that size runs on the loop only if the
last one took at most `inline_max_s`. A size not seen yet, and every call of a new model (the follower switched
versions), goes to the thread first.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio
import anyio.to_thread

from service.models.contract import Outputs, Rows, rows_in


class Model(Protocol):
    def predict(self, rows: Rows, /) -> Outputs: ...


class ModelCalls:
    def __init__(self, inline_max_s: float) -> None:
        self._inline_max_s = inline_max_s
        self._model: Model | None = None
        self._took: dict[int, float] = {}  # rows.bit_length() -> seconds of the last call of that size
        self._thread: anyio.CapacityLimiter | None = None  # one call at a time in it, as BentoML's sync APIs

    async def predict(self, model: Model, rows: Rows) -> Outputs:
        if model is not self._model:
            self._model, self._took = model, {}
        size = rows_in(rows).bit_length()
        last = self._took.get(size)
        if last is not None and last <= self._inline_max_s:
            outputs, took = _timed(model, rows)
        else:
            self._thread = self._thread or anyio.CapacityLimiter(1)  # made in the event loop
            outputs, took = await anyio.to_thread.run_sync(_timed, model, rows, limiter=self._thread)
        self._took[size] = took
        return outputs


def _timed(model: Model, rows: Rows) -> tuple[Outputs, float]:
    started = time.perf_counter()
    outputs = model.predict(rows)
    return outputs, time.perf_counter() - started
