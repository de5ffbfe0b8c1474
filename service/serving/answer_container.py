"""Adaptive batching of the answers: how one batch's answer is cut back into one answer per request.

BentoML merges the requests' arrays into one batch and splits the batch's output by the requests' row counts,
with a "data container" chosen by the output's type. Lists and arrays have one; an answer that also names the
model does not, so each answer class gets one here (registered when the service is defined).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, pairwise
from typing import Any

from bentoml._internal.runner.container import DataContainer, DataContainerRegistry
from pydantic import BaseModel

from service.http.schemas import ROW_FIELDS


def _row_fields(answer: BaseModel) -> list[str]:
    return [field for field in ROW_FIELDS if field in type(answer).model_fields]


class AnswerContainer(DataContainer[BaseModel, BaseModel]):
    @classmethod
    def batches_to_batch(
        cls, batches: Sequence[BaseModel], batch_dim: int = 0
    ) -> tuple[BaseModel, list[int]]:
        """Parts of one request split across batches joined again: BentoML's Cork dispatcher splits a request larger
        than a batch; the service's own dispatcher (service/batch_dispatcher.py) never does, so it does not call this
        (DataContainer requires it)."""
        first = batches[0]
        indices = [0, *accumulate(cls.get_batch_size(part) for part in batches)]
        joined = {
            field: [value for part in batches for value in getattr(part, field)]
            for field in _row_fields(first)
        }
        return type(first).model_construct(None, model=first.model, **joined), indices  # type: ignore[attr-defined]

    @classmethod
    def batch_to_batches(
        cls, batch: BaseModel, indices: Sequence[int], batch_dim: int = 0
    ) -> list[BaseModel]:
        fields = _row_fields(batch)
        return [
            type(batch).model_construct(
                model=batch.model,  # type: ignore[attr-defined]
                **{field: getattr(batch, field)[start:end] for field in fields},
            )
            for start, end in pairwise(indices)
        ]

    @classmethod
    def get_batch_size(cls, batch: BaseModel, batch_dim: int = 0) -> int:
        return len(batch.predictions)  # type: ignore[attr-defined]

    @classmethod
    def to_payload(cls, batch: Any, batch_dim: int) -> Any:
        raise NotImplementedError("answers stay in the worker")

    @classmethod
    def from_payload(cls, payload: Any) -> Any:
        raise NotImplementedError("answers stay in the worker")


def register(answer: type[BaseModel]) -> None:
    DataContainerRegistry.register_container(answer, answer, AnswerContainer)
