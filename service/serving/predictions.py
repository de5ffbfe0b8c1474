"""Rows predicted by the version that answers, batched with other requests' rows: what `POST /predict` and the
Open Inference Protocol's `infer` both call, so that both go through the same batching and the same model calls.

A batch takes the current version once (a follower may swap it meanwhile), so every request of the batch is
answered by one version, and says which. Off (BATCHING=false), each request is one model call of its own. What a
request gets back is cut from the batch's: its outputs (`infer`), or its answer (`/predict`), built once a batch.
With a recorder (service/evidence/records.py), each answered request is recorded under its `X-Request-ID`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

from bentoml.exceptions import ServiceUnavailable

from service.evidence.records import Recorder
from service.http.request_ids import request_id
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
        recorder: Recorder | None = None,
    ) -> None:
        self._models = models
        self._calls = calls
        self._recorder = recorder
        self._batches = _batches_counter()
        self._submit = (
            BatchDispatcher(max_latency_ms, max_batch_size, fallback=_overloaded, get_batch_size=rows_in)(
                self._predict_batch
            )
            if batching
            else None
        )

    async def __call__(self, rows: Rows) -> Answered:
        """The outputs for `rows`, and the version that answered them."""
        batch, i = await self._predicted(rows, "infer")
        return batch.model, batch.outputs_each[i]

    async def answer(self, rows: Rows) -> tuple[Model, dict[str, Any]]:
        """The answer for `rows` as /predict gives it (ModelContract.answer), and the version that answered."""
        batch, i = await self._predicted(rows, "predict")
        return batch.model, batch.answers[i]

    async def _predicted(self, rows: Rows, kind: str) -> tuple[Batch, int]:
        started = time.perf_counter()
        if self._submit is None:
            predicted = (await self._predict_batch([rows]))[0]
        else:
            predicted = await self._submit(rows)
        if self._recorder is not None:
            batch, i = predicted
            self._recorder.add(request_id(), kind, batch, i, rows, time.perf_counter() - started)
        return predicted

    async def _predict_batch(self, requests: Sequence[Rows]) -> list[tuple[Batch, int]]:
        model = self._models.current  # once: the whole batch is answered by one version, and says which
        outputs = await self._calls.predict(model, join_rows(requests))
        self._batches.observe(len(requests))
        batch = Batch(model, outputs, [rows_in(rows) for rows in requests])
        return [(batch, i) for i in range(len(requests))]


class Batch:
    """One model call's outputs, cut into each request's outputs or answers on first use (a batch may hold
    requests of /predict and of `infer`)."""

    def __init__(self, model: Model, outputs: Outputs, counts: list[int]) -> None:
        self.model = model
        self.outputs = outputs
        self.counts = counts

    @functools.cached_property
    def outputs_each(self) -> list[Outputs]:
        return split_outputs(self.outputs, self.counts)

    @functools.cached_property
    def answers(self) -> list[dict[str, Any]]:
        return self.model.contract.answers(self.outputs, self.counts)


def _overloaded() -> Any:
    raise ServiceUnavailable("process is overloaded: a request waited longer than MAX_LATENCY_MS")


@functools.cache
def _batches_counter() -> Any:
    """Requests per model call (the batches' sizes), on `/metrics`: one histogram a process."""
    from prometheus_client import Histogram

    return Histogram("nbship_batch_requests", "Requests answered by one model call.", buckets=BATCH_BUCKETS)
