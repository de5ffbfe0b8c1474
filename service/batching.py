"""Adaptive batching of `PredictResponse`: how one batch's answer is cut back into one answer per request.

BentoML merges the requests' arrays into one batch and splits the batch's output by the requests' row counts,
with a "data container" chosen by the output's type. Lists and arrays have one; a response object that also
names the model does not, so it gets one here (registered when the service is defined).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, pairwise
from typing import Any

from bentoml._internal.runner.container import DataContainer, DataContainerRegistry

from service.schemas import PredictResponse


class PredictResponseContainer(DataContainer[PredictResponse, PredictResponse]):
    @classmethod
    def batches_to_batch(
        cls, batches: Sequence[PredictResponse], batch_dim: int = 0
    ) -> tuple[PredictResponse, list[int]]:
        """Parts of one request split across batches are joined again (requests larger than a batch)."""
        indices = [0, *accumulate(len(part.predictions) for part in batches)]
        joined = PredictResponse.model_construct(
            model=batches[0].model,
            predictions=[value for part in batches for value in part.predictions],
            probabilities=[row for part in batches for row in part.probabilities],
        )
        return joined, indices

    @classmethod
    def batch_to_batches(
        cls, batch: PredictResponse, indices: Sequence[int], batch_dim: int = 0
    ) -> list[PredictResponse]:
        return [
            PredictResponse.model_construct(
                model=batch.model,
                predictions=batch.predictions[start:end],
                probabilities=batch.probabilities[start:end],
            )
            for start, end in pairwise(indices)
        ]

    @classmethod
    def get_batch_size(cls, batch: PredictResponse, batch_dim: int = 0) -> int:
        return len(batch.predictions)

    @classmethod
    def to_payload(cls, batch: Any, batch_dim: int) -> Any:
        raise NotImplementedError("PredictResponse batches stay in the worker")

    @classmethod
    def from_payload(cls, payload: Any) -> Any:
        raise NotImplementedError("PredictResponse batches stay in the worker")


def register() -> None:
    DataContainerRegistry.register_container(PredictResponse, PredictResponse, PredictResponseContainer)
