"""Contracts of the test's own fake models (service.models.contract): what the job tests' fake digits model takes."""

from __future__ import annotations

import numpy as np

from service.http.rows import RowRules
from service.http.schemas import request_model
from service.models.contract import ModelContract, Tensor

# The fake digits model of the job tests: 64 float32 features in, 10 class probabilities out.
DIGITS_LIKE = ModelContract.single(
    "classification",
    Tensor((64,), np.dtype("float32"), "pixels"),
    Tensor((10,), np.dtype("float32"), "probabilities"),
)


def rules(max_rows: int, contract: ModelContract = DIGITS_LIKE) -> RowRules:
    return RowRules(lambda: contract, max_rows)


def job_request(max_rows: int, contract: ModelContract = DIGITS_LIKE) -> type:
    """The job API's body model for `contract`, as the service builds it."""
    return request_model("JobRequest", rules(max_rows, contract), contract)
