"""Rows predicted by the version that answers, batched with other requests' rows: what `POST /predict` and the
Open Inference Protocol's `infer` both call, so that both go through the same batching and the same model calls.

A batch takes the current version once (a follower may swap it meanwhile), so every request of the batch is
answered by one version, and says which. Off (BATCHING=false), each request is one model call of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from bentoml.exceptions import ServiceUnavailable

from service.models.contract import Outputs, Rows, join_rows, rows_in, split_outputs
from service.models.source import Model, ModelSource
from service.serving.dispatcher import BatchDispatcher
from service.serving.model_calls import ModelCalls

Answered = tuple[Model, Outputs]  # the version that answered, and its outputs for the request's rows
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Predictions:
    def __init__(
        self,
        models: ModelSource[Any],
        calls: ModelCalls,
        *,
        batching: bool,
        max_batch_size: int,
        max_latency_ms: float,
    ) -> None:
        self._models = models
        self._calls = calls
        self._batches = _batches_counter()
        self._submit = (
            BatchDispatcher(max_latency_ms, max_batch_size, fallback=_overloaded, get_batch_size=rows_in)(
                self._predict_batch
            )
            if batching
            else None
        )

    async def __call__(self, rows: Rows) -> Answered:
        if self._submit is None:
            return (await self._predict_batch([rows]))[0]
        answered: Answered = await self._submit(rows)
        return answered

    async def _predict_batch(self, batch: Sequence[Rows]) -> list[Answered]:
        model = self._models.current  # once: the whole batch is answered by one version, and says which
        outputs = await self._calls.predict(model, join_rows(batch))
        self._batches.observe(len(batch))
        return [(model, part) for part in split_outputs(outputs, [rows_in(rows) for rows in batch])]


def _overloaded() -> Any:
    raise ServiceUnavailable("process is overloaded: a request waited longer than MAX_LATENCY_MS")


@functools.cache
def _batches_counter() -> Any:
    """Requests per model call (the batches' sizes), on `/metrics`: one histogram a process."""
    from prometheus_client import Histogram

    return Histogram("nbship_batch_requests", "Requests answered by one model call.", buckets=BATCH_BUCKETS)
