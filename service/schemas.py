"""Request and response shapes of the service, and the validation of request rows against the model's signature.

Validation runs per request, before adaptive batching merges requests, so an error names the row and field of
the request that sent it. Every error is a pydantic error: BentoML answers it with 400 and a JSON body.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any, NoReturn

import numpy as np
from pydantic import BaseModel, Field
from pydantic_core import PydanticCustomError

from service.model_loader import InputSpec

MAX_REPORTED_ERRORS = 5
LINEAGE_KEY = "lineage"  # the BentoML model's metadata entry holding its ModelLineage (written by packaging)


class ServedModel(BaseModel):
    name: str
    version: str


class PredictResponse(BaseModel):
    """Columnar: row i of the request has `predictions[i]` and `probabilities[i]`."""

    model: ServedModel = Field(description="The registered model and version that answered.")
    predictions: list[int] = Field(description="Predicted class of each row (argmax of its probabilities).")
    probabilities: list[list[float]] = Field(description="Class probabilities of each row.")


class NoopResponse(BaseModel):
    """Answer of the benchmarks' no-op API. A model, like `PredictResponse`: BentoML rebuilds the JSON schema of a
    plain `dict`/`list` return type on every response, which would make the ceiling slower than /predict."""

    rows: int


class ModelLineage(BaseModel):
    """Where the served model comes from; stored with the BentoML model at packaging, served by GET /model."""

    name: str = Field(description="Registered MLflow model name.")
    version: str
    alias: str = Field(description="The alias the version held when it was packaged.")
    run_id: str = Field(description="The MLflow run that trained it.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Test metrics of that run.")
    trained_at: str | None = Field(default=None, description="Start of the training run (UTC, ISO 8601).")
    notebook_sha256: str | None = None
    git_commit: str | None = None
    flavor: str | None = Field(default=None, description="How the service runs it: keras (graph) or pyfunc.")
    bento_model: str | None = Field(default=None, description="BentoML model tag.")


def rows_schema(max_rows: int | None = None) -> dict[str, Any]:
    """The JSON schema of `instances` in the OpenAPI document: 1 or more rows of numbers. Only the document's: the
    rows are checked by `InstanceRules`, whose row width (the model's) is read after the service is defined."""
    schema: dict[str, Any] = {
        "type": "array",
        "minItems": 1,
        "items": {"type": "array", "minItems": 1, "items": {"type": "number"}},
    }
    return schema if max_rows is None else schema | {"maxItems": max_rows}


class InstanceRules:
    """Checks the `instances` of a request: 1..max_rows rows of `n_features` finite numbers of the model's dtype.

    The input spec comes from a callable, read on first use in the worker (not when the service is defined).
    """

    def __init__(self, spec: Callable[[], InputSpec], max_rows: int) -> None:
        self._spec = cache(spec)
        self.max_rows = max_rows

    @property
    def spec(self) -> InputSpec:
        return self._spec()

    def __call__(self, value: Any) -> np.ndarray:
        return parse_instances(value, self.spec, self.max_rows)


def parse_instances(value: Any, spec: InputSpec, max_rows: int) -> np.ndarray:
    """The rows as an array of the model's dtype, or a PydanticCustomError naming the rows and fields at fault."""
    if isinstance(value, np.ndarray):  # in-process callers
        value = value.tolist()
    if not isinstance(value, list):
        _fail(f"expected a list of rows of {spec.n_features} numbers, got {_kind(value)}")
    if not value:
        _fail("no rows: send at least one row")
    if len(value) > max_rows:
        _fail(f"{len(value)} rows; at most {max_rows} rows per request")
    # The fast path: one conversion. Strings, None, nested or ragged rows fall to the row-by-row search.
    try:
        raw = np.array(value)
    except (ValueError, TypeError):
        raw = None
    if raw is not None and raw.ndim == 2 and raw.shape[1] == spec.n_features and raw.dtype.kind in "iuf":
        with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as inf, reported below
            rows = raw.astype(spec.dtype, copy=False)
        # JSON numbers arrive as float64: they must stay finite (and whole, for integer inputs) once cast.
        exact = np.isfinite(rows).all() if rows.dtype.kind == "f" else np.array_equal(rows, raw)
        if exact:
            return rows
    _fail(_describe(value, spec))


def _describe(rows: list[Any], spec: InputSpec) -> str:
    """What is wrong, row by row and field by field (first few problems)."""
    problems: list[str] = []
    dtype = np.dtype(spec.dtype)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            problems.append(f"row {i}: expected a list of {spec.n_features} numbers, got {_kind(row)}")
        elif len(row) != spec.n_features:
            problems.append(f"row {i}: has {len(row)} values, the model takes {spec.n_features}")
        else:
            for j, item in enumerate(row):
                problem = _field_problem(item, dtype)
                if problem:
                    problems.append(f"row {i}, field {j}: {problem}")
                    if len(problems) >= MAX_REPORTED_ERRORS:
                        break
        if len(problems) >= MAX_REPORTED_ERRORS:
            break
    if not problems:  # every value passes on its own (e.g. mixed integer overflow): say so plainly
        problems.append(f"values out of range for {dtype.name}")
    return "; ".join(problems)


def _field_problem(item: Any, dtype: np.dtype) -> str | None:
    if not isinstance(item, (int, float)):  # JSON true/false pass as 1/0, as numpy reads them
        return f"expected a number, got {_kind(item)}"
    if isinstance(item, float) and not math.isfinite(item):
        return f"{item} is not a finite number"
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            cast = np.array(item, dtype=np.float64).astype(dtype)
        if not np.isfinite(cast):
            return f"{item} is out of range for {dtype.name}"
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not float(item).is_integer() or not info.min <= item <= info.max:
            return f"{item} is not an integer in the range of {dtype.name}"
    return None


def _kind(value: Any) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "..."
        return f"a string ({shown!r})"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return type(value).__name__


def _fail(message: str) -> NoReturn:
    # The message goes in the context: braces in it (echoed input) must not be read as a template.
    raise PydanticCustomError("invalid_instances", "{reason}", {"reason": message})
