"""One request contract for every route that takes rows (`POST /predict`, `POST /jobs`): the body formats, and
the rows checked against the model's contract, by the same code.

A body is a JSON object with exactly one of MLflow's scoring keys, so a client of `mlflow models serve` keeps
working:

    {"instances": [row, ...]}           a row: nested lists of the model's input shape, or (with feature names)
    {"inputs": [row, ...]}              an object keyed by feature name
    {"dataframe_split": {"columns": [...], "data": [[...], ...]}}    named features only
    {"dataframe_records": [{"name": value, ...}, ...]}              named features only

Values are finite numbers (JSON true/false are not numbers here) that fit the model's dtype. Every problem is a
`RequestError` whose message names the row and field at fault; messages never echo more than a few characters of
the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, NoReturn

import numpy as np

from service.models.contract import ModelContract, show_shape

FORMATS = ("instances", "inputs", "dataframe_split", "dataframe_records")
MAX_REPORTED_ERRORS = 5
MAX_NAMES_SHOWN = 12


class RequestError(ValueError):
    """A body that breaks the request contract; the message says what is wrong (short, never the input)."""


def fail(message: str) -> NoReturn:
    raise RequestError(message)


class RowRules:
    """Parses request bodies for one model contract and row limit. The contract comes from a callable, read on
    first use (in the serving process, not when the service module is imported by a build)."""

    def __init__(self, contract: Callable[[], ModelContract], max_rows: int) -> None:
        self._contract = cache(contract)
        self.max_rows = max_rows

    @property
    def contract(self) -> ModelContract:
        return self._contract()

    def body(self, body: Any) -> np.ndarray:
        """The rows of a request body in any of the formats, as an array of the model's input dtype and shape."""
        return parse_body(body, self.contract, self.max_rows)

    def rows(self, rows: Any) -> np.ndarray:
        """Rows already taken out of a body (a list of rows, or an array from an in-process caller)."""
        return parse_rows(rows, self.contract, self.max_rows)


def parse_body(body: Any, contract: ModelContract, max_rows: int) -> np.ndarray:
    if not isinstance(body, dict):
        fail(f"expected a JSON object with one of {', '.join(FORMATS)}, got {_kind(body)}")
    keys = [key for key in body if key in FORMATS]
    unknown = [key for key in body if key not in FORMATS]
    if unknown:
        fail(f"unknown key {_short(unknown[0])}; send one of {', '.join(FORMATS)}")
    if len(keys) != 1:
        fail(
            f"send the rows under exactly one of {', '.join(FORMATS)}"
            + (f", not {len(keys)}" if keys else "")
        )
    key = keys[0]
    value = body[key]
    if key == "inputs" and isinstance(value, dict):  # MLflow's named-tensor form, for the model's one tensor
        name = contract.input.name or "inputs"
        if list(value) != [name]:
            fail(f"inputs as an object must hold the model's one input tensor {name!r}")
        value = value[name]
    if key == "dataframe_split":
        value = _split_rows(value, contract)
    elif key == "dataframe_records":
        value = _named_rows(value, contract, "dataframe_records")
    return parse_rows(value, contract, max_rows)


def parse_rows(value: Any, contract: ModelContract, max_rows: int) -> np.ndarray:
    """The rows as an array of the model's dtype and shape, or a RequestError naming the rows and fields at fault."""
    if isinstance(value, np.ndarray):  # in-process callers
        value = value.tolist()
    shape = contract.input.shape
    if not isinstance(value, list):
        fail(f"expected a list of rows of shape {show_shape(shape)}, got {_kind(value)}")
    if not value:
        fail("no rows: send at least one row")
    if len(value) > max_rows:
        fail(f"{len(value)} rows; at most {max_rows} rows per request")
    if contract.feature_names is not None and any(isinstance(row, dict) for row in value):
        value = _named_rows(value, contract, "instances")
    # The fast path: one conversion. Strings, None, nested or ragged rows fall to the row-by-row search.
    try:
        raw = np.array(value)
    except (ValueError, TypeError):
        raw = None
    dtype = contract.input.dtype
    if raw is not None and raw.shape[1:] == shape and raw.dtype.kind in "iuf" and not _has_boolean(value):
        with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as inf, reported below
            rows = raw.astype(dtype, copy=False)
        # JSON numbers arrive as float64: they must stay finite (and whole, for integer inputs) once cast.
        exact = np.isfinite(rows).all() if rows.dtype.kind == "f" else np.array_equal(rows, raw)
        if exact:
            return rows
    fail(_describe(value, contract))


def _split_rows(value: Any, contract: ModelContract) -> list[Any]:
    names = _feature_names(contract, "dataframe_split")
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        fail('dataframe_split must be an object {"columns": [...], "data": [[...], ...]}')
    extra = [key for key in value if key not in ("columns", "data", "index")]
    if extra:
        fail(f"unknown key {_short(extra[0])} in dataframe_split")
    columns = value.get("columns", list(names))
    if not isinstance(columns, list) or not all(isinstance(column, str) for column in columns):
        fail("dataframe_split columns must be a list of feature names")
    _check_names(columns, names, "dataframe_split columns")
    order = [columns.index(name) for name in names]
    rows = value["data"]
    if len(rows) > 0 and all(isinstance(row, list) and len(row) == len(columns) for row in rows):
        return [[row[i] for i in order] for row in rows]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            fail(f"dataframe_split row {i}: expected {len(columns)} values, one per column, got {_kind(row)}")
    return rows


def _named_rows(rows: Any, contract: ModelContract, where: str) -> list[Any]:
    names = _feature_names(contract, where)
    if not isinstance(rows, list):
        fail(f"{where} must be a list of rows, got {_kind(rows)}")
    ordered = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            fail(f"row {i}: expected an object keyed by feature name, got {_kind(row)}")
        _check_names(list(row), names, f"row {i}")
        ordered.append([row[name] for name in names])
    return ordered


def _feature_names(contract: ModelContract, where: str) -> tuple[str, ...]:
    if contract.feature_names is None:
        fail(
            f"{where} needs named features, and this model's features have no names: send instances, rows of "
            f"shape {show_shape(contract.input.shape)}"
        )
    return contract.feature_names


def _check_names(given: Sequence[str], names: Sequence[str], where: str) -> None:
    missing = [name for name in names if name not in given]
    unknown = [name for name in given if name not in names]
    if unknown:
        fail(f"{where}: unknown feature {_short(unknown[0])}; the model takes {_names(names)}")
    if missing:
        fail(
            f"{where}: missing feature {_short(missing[0])}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    if len(given) != len(set(given)):
        fail(f"{where}: a feature is named twice")


def _has_boolean(value: list[Any]) -> bool:
    """numpy reads JSON true/false as 1/0 among numbers; the contract does not."""
    if value and isinstance(value[0], list) and value[0] and not isinstance(value[0][0], list):
        return any(item is True or item is False for row in value for item in row)
    return any(
        _has_boolean(item) if isinstance(item, list) else item is True or item is False for item in value
    )


def _describe(rows: list[Any], contract: ModelContract) -> str:
    """What is wrong, row by row and field by field (the first few problems)."""
    problems: list[str] = []
    dtype = contract.input.dtype
    for i, row in enumerate(rows):
        _walk(row, contract.input.shape, dtype, f"row {i}", (), problems)
        if len(problems) >= MAX_REPORTED_ERRORS:
            break
    if not problems:  # every value passes on its own (e.g. mixed integer overflow): say so plainly
        problems.append(f"values out of range for {dtype.name}")
    return "; ".join(problems[:MAX_REPORTED_ERRORS])


def _walk(
    value: Any, shape: tuple[int, ...], dtype: np.dtype, row: str, at: tuple[int, ...], problems: list[str]
) -> None:
    if len(problems) >= MAX_REPORTED_ERRORS:
        return
    where = row if not at else f"{row}, field {_path(at, flat=len(at) + len(shape) == 1)}"
    if shape:
        if not isinstance(value, list):
            fail_text = f"expected a list of {shape[0]} {'numbers' if len(shape) == 1 else 'lists'}"
            problems.append(f"{where}: {fail_text}, got {_kind(value)}")
            return
        if len(value) != shape[0]:
            takes = f"the model takes {shape[0]}" + (
                f" (rows of shape {show_shape(shape)})" if not at else ""
            )
            problems.append(f"{where}: has {len(value)} values, {takes}")
            return
        for j, item in enumerate(value):
            _walk(item, shape[1:], dtype, row, (*at, j), problems)
        return
    problem = _field_problem(value, dtype)
    if problem:
        problems.append(f"{where}: {problem}")


def _path(at: tuple[int, ...], flat: bool) -> str:
    """A flat row's field is its index; a field of a deeper row is its index at every level, `[1][0][0]`."""
    return str(at[0]) if flat else "".join(f"[{i}]" for i in at)


def _field_problem(item: Any, dtype: np.dtype) -> str | None:
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return f"expected a number, got {_kind(item)}"
    if isinstance(item, float) and not math.isfinite(item):
        return f"{item} is not a finite number"
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            cast = np.array(item, dtype=np.float64).astype(dtype)
        if not np.isfinite(cast):
            return f"{_short(item)} is out of range for {dtype.name}"
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not float(item).is_integer() or not info.min <= item <= info.max:
            return f"{_short(item)} is not an integer in the range of {dtype.name}"
    return None


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"a string ({_short(value)})"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


def _short(value: Any, limit: int = 20) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_NAMES_SHOWN else "")
