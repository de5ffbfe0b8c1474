"""One request contract for every route that takes rows (`POST /predict`, `POST /jobs`, the Open Inference
Protocol's `infer`): the body formats, and the rows checked against the model's contract, by the same code.

A body is a JSON object with exactly one of MLflow's scoring keys, so a client of `mlflow models serve` keeps
working. A model of one input:

    {"instances": [row, ...]}           a row: nested lists of the input's shape, or (with feature names)
    {"inputs": [row, ...]}              an object keyed by feature name
    {"dataframe_split": {"columns": [...], "data": [[...], ...]}}    named features only
    {"dataframe_records": [{"name": value, ...}, ...]}              named features only

A model of several named inputs:

    {"inputs": {"name": [row, ...], ...}}                   each input's rows (MLflow's named tensors)
    {"instances": [{"name": row, ...}, ...]}                each row an object of every input's value
    {"dataframe_records": [...]}, {"dataframe_split": ...}  when every input is one value a row (a table's columns)

Values are finite numbers (JSON true/false are not numbers here) that fit the input's dtype, or strings for a
string input; an input of shape [-1, 1] also takes one bare value a row. A number fits a float input when it
rounds to a finite value of its dtype (`number_limit`), an integer input when it is whole and in its range.
`dataframe_split` takes a model of several inputs only when they are of one dtype and shape: its rows are
positional, and an OpenAPI 3.0 document cannot give each position its own type. The OpenAPI document says the
same (service.http.schemas), but for one rule JSON Schema cannot state: every input the same number of rows.
Every problem is a `RequestError` whose message names the input (of several), row and field at fault; messages
never echo more than a few characters of the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, NoReturn

import numpy as np

from service.models.contract import STRING, ModelContract, Rows, Tensor, show_shape

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

    def body(self, body: Any) -> Rows:
        """The rows of a request body in any of the formats, by input name, of the inputs' dtypes and shapes."""
        return parse_body(body, self.contract, self.max_rows)


def parse_body(body: Any, contract: ModelContract, max_rows: int) -> Rows:
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
    if not contract.single_input:
        return _named_inputs(key, value, contract, max_rows)
    tensor = contract.input
    if key == "inputs" and isinstance(value, dict):  # MLflow's named-tensor form, for the model's one tensor
        if list(value) != [tensor.name]:
            fail(f"inputs as an object must hold the model's one input tensor {tensor.name!r}")
        value = value[tensor.name]
    if key == "dataframe_split":
        value = _split_rows(value, _feature_names(contract, key), "feature")
    elif key == "dataframe_records":
        value = _named_rows(value, _feature_names(contract, key), key, "feature")
    elif (
        contract.feature_names is not None
        and isinstance(value, list)
        and any(isinstance(r, dict) for r in value)
    ):
        value = _named_rows(value, contract.feature_names, key, "feature")
    return {tensor.name: parse_rows(value, tensor, max_rows)}


def _named_inputs(key: str, value: Any, contract: ModelContract, max_rows: int) -> Rows:
    """Rows of a model of several inputs: each input's rows, by name."""
    names = [tensor.name for tensor in contract.inputs]
    if key in ("dataframe_split", "dataframe_records") and not contract.scalar_columns:
        fail(f"{key} needs a model whose every input is one value a row; send inputs or instances")
    if key == "dataframe_split" and not contract.uniform_columns:
        fail(
            "dataframe_split needs inputs of one dtype and shape; this model's differ: send dataframe_records"
        )
    if key == "inputs":
        if not isinstance(value, dict):
            fail(f"inputs must be an object of each input's rows ({_names(names)}), got {_kind(value)}")
        _check_names(list(value), names, "inputs", "input")
        columns = value
    else:
        if key == "dataframe_split":
            ordered = _split_rows(value, names, "input")
        else:
            ordered = _named_rows(value, names, key, "input")
        columns = {name: [row[i] for row in ordered] for i, name in enumerate(names)}
    counts = {name: len(rows) for name, rows in columns.items() if isinstance(rows, (list, np.ndarray))}
    if len(set(counts.values())) > 1:
        fail(
            "every input needs the same number of rows, got "
            + ", ".join(f"{n} {c}" for n, c in counts.items())
        )
    return {t.name: parse_rows(columns[t.name], t, max_rows, f"input {t.name!r}, ") for t in contract.inputs}


def parse_rows(value: Any, tensor: Tensor, max_rows: int, where: str = "") -> np.ndarray:
    """The rows of one input as an array of its dtype and shape, or a RequestError naming the rows and fields at
    fault (`where` says which input, when the model has several)."""
    if isinstance(value, np.ndarray):  # in-process callers
        value = value.tolist()
    shape = tensor.shape
    if not isinstance(value, list):
        fail(f"{where}expected a list of rows of shape {show_shape(shape)}, got {_kind(value)}")
    if not value:
        fail(f"{where}no rows: send at least one row")
    if len(value) > max_rows:
        fail(f"{where}{len(value)} rows; at most {max_rows} rows per request")
    if shape == (1,):
        value = [row if isinstance(row, list) else [row] for row in value]  # a bare value a row
    rows = _strings(value, shape) if tensor.strings else _numbers(value, shape, tensor.dtype)
    if rows is None:
        problems = _problems(value, tensor, where)
        if problems or tensor.strings:
            fail("; ".join(problems) or f"{where}values that are not strings")
        rows = _in_range(value, tensor.dtype)
    return rows


def number_limit(dtype: np.dtype) -> float:
    """The largest magnitude a JSON number may have for a float input of `dtype`, the limit included: the largest
    float64 that rounds to a finite value of the dtype (float32: the float64 just below 2**128 - 2**103, which is
    halfway from its max to the next power of two, where the tie rounds to infinity). float64's is its max (a JSON
    float cannot pass it; a long integer literal can). Compared exactly, integer literals too."""
    info = np.finfo(dtype)
    if info.bits >= 64:
        return float(info.max)
    return float(np.nextafter(2.0**info.maxexp - 2.0 ** (info.maxexp - info.nmant - 2), 0.0))


def _in_range(value: list[Any], dtype: np.dtype) -> np.ndarray:
    """Rows whose every value was checked on its own, which the fast path could not convert: integers beyond
    float64's precision (whole numbers near a float32's limit, or an int64 beside a float)."""
    if dtype.kind != "f":
        return np.array(value, dtype=dtype)
    largest = np.finfo(dtype).max
    return np.clip(np.array(value, dtype=np.float64), -largest, largest).astype(dtype)


def _numbers(value: list[Any], shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """The fast path: one conversion. Strings, None, nested or ragged rows fall to the row-by-row search."""
    try:
        raw = np.array(value)
    except (ValueError, TypeError, OverflowError):  # OverflowError: an integer past float64 beside a float
        return None
    if raw.shape[1:] != shape or raw.dtype.kind not in "iuf" or _has_boolean(value):
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as inf, reported below
        rows = raw.astype(dtype, copy=False)
    # JSON numbers arrive as float64: they must stay finite (and whole, for integer inputs) once cast.
    exact = np.isfinite(rows).all() if rows.dtype.kind == "f" else np.array_equal(rows, raw)
    return rows if exact else None


def _strings(value: list[Any], shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        raw = np.array(value, dtype=STRING)
    except (ValueError, TypeError):
        return None
    if raw.shape[1:] != shape or not all(isinstance(item, str) for item in raw.flat):
        return None
    return raw


def _split_rows(value: Any, names: Sequence[str], what: str) -> list[Any]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        fail('dataframe_split must be an object {"columns": [...], "data": [[...], ...]}')
    extra = [key for key in value if key not in ("columns", "data", "index")]
    if extra:
        fail(f"unknown key {_short(extra[0])} in dataframe_split")
    columns = value.get("columns", list(names))
    if not isinstance(columns, list) or not all(isinstance(column, str) for column in columns):
        fail(f"dataframe_split columns must be a list of {what} names")
    _check_names(columns, names, "dataframe_split columns", what)
    order = [columns.index(name) for name in names]
    rows = value["data"]
    if len(rows) > 0 and all(isinstance(row, list) and len(row) == len(columns) for row in rows):
        return [[row[i] for i in order] for row in rows]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            fail(f"dataframe_split row {i}: expected {len(columns)} values, one per column, got {_kind(row)}")
    return rows


def _named_rows(rows: Any, names: Sequence[str], where: str, what: str) -> list[Any]:
    if not isinstance(rows, list):
        fail(f"{where} must be a list of rows, got {_kind(rows)}")
    ordered = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            fail(f"row {i}: expected an object keyed by {what} name, got {_kind(row)}")
        _check_names(list(row), names, f"row {i}", what)
        ordered.append([row[name] for name in names])
    return ordered


def _feature_names(contract: ModelContract, where: str) -> tuple[str, ...]:
    if contract.feature_names is None:
        fail(
            f"{where} needs named features, and this model's features have no names: send instances, rows of "
            f"shape {show_shape(contract.input.shape)}"
        )
    return contract.feature_names


def _check_names(given: Sequence[str], names: Sequence[str], where: str, what: str) -> None:
    missing = [name for name in names if name not in given]
    unknown = [name for name in given if name not in names]
    if unknown:
        fail(f"{where}: unknown {what} {_short(unknown[0])}; the model takes {_names(names)}")
    if missing:
        fail(
            f"{where}: missing {what} {_short(missing[0])}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    if len(given) != len(set(given)):
        fail(f"{where}: a {what} is named twice")


def _has_boolean(value: list[Any]) -> bool:
    """numpy reads JSON true/false as 1/0 among numbers; the contract does not."""
    if value and isinstance(value[0], list) and value[0] and not isinstance(value[0][0], list):
        return any(item is True or item is False for row in value for item in row)
    return any(
        _has_boolean(item) if isinstance(item, list) else item is True or item is False for item in value
    )


def _problems(rows: list[Any], tensor: Tensor, where: str) -> list[str]:
    """What is wrong, row by row and field by field (the first few problems)."""
    problems: list[str] = []
    for i, row in enumerate(rows):
        _walk(row, tensor.shape, tensor.dtype, f"{where}row {i}", (), problems)
        if len(problems) >= MAX_REPORTED_ERRORS:
            break
    return problems[:MAX_REPORTED_ERRORS]


def _walk(
    value: Any, shape: tuple[int, ...], dtype: np.dtype, row: str, at: tuple[int, ...], problems: list[str]
) -> None:
    if len(problems) >= MAX_REPORTED_ERRORS:
        return
    where = row if not at else f"{row}, field {_path(at, flat=len(at) + len(shape) == 1)}"
    if shape:
        if not isinstance(value, list):
            items = ("strings" if dtype == STRING else "numbers") if len(shape) == 1 else "lists"
            fail_text = f"expected a list of {shape[0]} {items}"
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
    if dtype == STRING:
        return None if isinstance(item, str) else f"expected a string, got {_kind(item)}"
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return f"expected a number, got {_kind(item)}"
    if isinstance(item, float) and not math.isfinite(item):
        return f"{item} is not a finite number"
    if dtype.kind == "f":
        if abs(item) > number_limit(dtype):  # compared exactly, a long integer too
            return f"{_short(item)} is out of range for {dtype.name}"
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        whole = isinstance(item, int) or item.is_integer()
        if not whole or not info.min <= item <= info.max:
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
