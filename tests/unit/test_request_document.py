"""The request body's OpenAPI schema (service.http.schemas) says exactly what the rows' check takes
(service.http.rows), for one contract of each form (tests/support/models.py FORMS): every body the document
allows is taken, every body it refuses is refused, at the number bounds of each dtype too.

Bodies come from schemathesis's own strategies for a document holding the schema (valid ones and invalid ones,
as `schemathesis run` makes them), from valid ones with one value swapped for a value at or past a dtype's bound,
and from a table of bounds. The document is read as schemathesis reads OpenAPI 3.0 (JSON Schema draft 4). The one
rule JSON Schema cannot state, every input the same number of rows by name, is the one exception allowed.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from support.models import FORMS

from service.http.rows import RequestError, parse_body
from service.http.schemas import request_schema
from service.models.contract import ModelContract

MAX_ROWS = 3
F32_LIMIT = 2.0**128 - 2.0**103  # halfway from float32's max to the next power of two: rounds to infinity
F16_LIMIT = 65520.0
F32_TOP = int(np.nextafter(F32_LIMIT, 0))  # the largest number a float32 input takes
F32_MAX, F64_MAX = float(np.finfo(np.float32).max), float(np.finfo(np.float64).max)
BOUNDS = [
    *(sign * value for sign in (1, -1) for value in (F32_MAX, np.nextafter(F32_LIMIT, 0), F32_LIMIT, 1e39)),
    F32_TOP, F32_TOP + 1, -F32_TOP - 1, int(F32_LIMIT), -int(F32_LIMIT),
    65504.0, 65519.99, F16_LIMIT, -F16_LIMIT, 65519, 65520, F64_MAX, -F64_MAX, 10**309, -(10**309),
    2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2.0**31, 2**63 - 1, 2**63, 2.0**63, -(2**63), -(2**63) - 1, 2**64,
    0, -0.0, 2.0, 2.5, 1e-320, True, None, "1",
]  # fmt: skip


def document(contract: ModelContract) -> dict[str, Any]:
    body = {"required": True, "content": {"application/json": {"schema": schema_of(contract)}}}
    return {
        "openapi": "3.0.2",
        "info": {"title": "rows", "version": "1"},
        "paths": {"/predict": {"post": {"requestBody": body, "responses": {"200": {"description": "rows"}}}}},
    }


def schema_of(contract: ModelContract) -> dict[str, Any]:
    return request_schema("PredictRequest", contract, MAX_ROWS)


def allowed(contract: ModelContract, body: Any) -> bool:
    return validator(contract).is_valid(body)


@cache
def validator(contract: ModelContract) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(schema_of(contract))


def taken(contract: ModelContract, body: Any) -> str | None:
    """None when the check takes the body, else its message."""
    try:
        parse_body(body, contract, MAX_ROWS)
    except RequestError as exc:
        return str(exc)
    return None


def unequal_rows(body: Any) -> bool:
    """Several inputs' rows by name, of different counts: the rule the document can only say in words."""
    by_name = body.get("inputs") if isinstance(body, dict) else None
    counts = (
        {len(rows) for rows in by_name.values() if isinstance(rows, list)}
        if isinstance(by_name, dict)
        else ()
    )
    return len(counts) > 1


def assert_agree(contract: ModelContract, body: Any) -> None:
    body = json.loads(json.dumps(body))  # as the service reads it
    refused = taken(contract, body)
    if allowed(contract, body) and unequal_rows(body):
        assert refused is not None and "the same number of rows" in refused, body
        return
    assert allowed(contract, body) == (refused is None), (refused, _short(body))


def _short(body: Any) -> str:
    text = json.dumps(body)
    return text if len(text) < 600 else text[:600] + "..."


def bodies(contract: ModelContract) -> st.SearchStrategy[Any]:
    operation = schemathesis.openapi.from_dict(document(contract))["/predict"]["POST"]
    cases = [operation.as_strategy(mode) for mode in GenerationMode]
    generated = st.one_of(*cases).map(lambda case: case.body).filter(lambda body: _is_json(body))
    return generated | operation.as_strategy(GenerationMode.POSITIVE).flatmap(
        lambda case: at_a_bound(case.body)
    )


def _is_json(body: Any) -> bool:
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def at_a_bound(body: Any) -> st.SearchStrategy[Any]:
    """`body` with one of its numbers (if it has any) swapped for a value of BOUNDS."""
    paths = list(_numbers(body, ()))
    if not paths:
        return st.just(body)
    return st.tuples(st.sampled_from(paths), st.sampled_from(BOUNDS)).map(lambda pick: _replaced(body, *pick))


def _numbers(node: Any, at: tuple[Any, ...]) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _numbers(value, (*at, i))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield at


def _replaced(node: Any, at: tuple[Any, ...], value: Any) -> Any:
    if not at:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[at[0]] = _replaced(node[at[0]], at[1:], value)
    return copy


EXAMPLES = 60
GENERATED = [
    form for form in FORMS if form != "digits"
]  # "counts" and "halves" are its form, narrower: faster


@pytest.mark.parametrize("form", GENERATED)
def test_the_document_allows_exactly_what_the_check_takes(form: str) -> None:
    contract = FORMS[form]

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies(contract))
    def agree(body: Any) -> None:
        assert_agree(contract, body)

    agree()


def rows_of(value: Any, width: int) -> list[list[Any]]:
    return [[value] * width]


@pytest.mark.parametrize(
    ("form", "value", "ok"),
    [
        ("digits", F32_MAX, True),
        ("digits", np.nextafter(F32_LIMIT, 0), True),  # rounds to float32's max
        ("digits", F32_LIMIT, False),  # the tie rounds to infinity
        ("digits", -F32_LIMIT, False),
        ("digits", F32_TOP, True),  # an integer literal at the limit, compared exactly
        ("digits", F32_TOP + 1, False),
        ("digits", 10**309, False),  # past float64 too: refused, not a crash
        ("halves", 65519.99, True),
        ("halves", 65520, False),
        ("one-feature", F64_MAX, True),
        ("one-feature", int(F64_MAX) + 1, False),
        ("counts", 2**31 - 1, True),
        ("counts", 2.0, True),  # JSON does not tell 2.0 from 2
        ("counts", 2.5, False),
        ("counts", -(2**31) - 1, False),
        ("ids", 2**63 - 1, True),
        ("ids", 2.0**63, False),
    ],
)
def test_a_value_at_a_bound_is_taken_exactly_when_the_document_allows_it(
    form: str, value: Any, ok: bool
) -> None:
    contract = FORMS[form]
    body = {"instances": rows_of(value, contract.input.width)}
    assert (allowed(contract, body), taken(contract, body) is None) == (ok, ok)


def test_values_the_fast_path_cannot_convert_are_kept_exactly() -> None:
    rows = parse_body({"instances": [[2**63 - 1, 1.0]]}, FORMS["ids"], 1)["ids"]
    assert rows.tolist() == [[2**63 - 1, 1]]
    rows = parse_body({"instances": [[F32_TOP] * 64]}, FORMS["digits"], 1)["pixels"]
    assert rows.dtype == np.float32 and np.isfinite(rows).all()


def test_mixed_columns_are_not_taken_as_positional_rows() -> None:
    """Each position of a dataframe_split row would need its own type: OpenAPI 3.0 cannot say so."""
    body = {"dataframe_split": {"columns": ["age", "sex", "bmi"], "data": [[59, "m", 32.1]]}}
    assert taken(FORMS["columns"], body) == (
        "dataframe_split needs inputs of one dtype and shape; this model's differ: send dataframe_records"
    )
    assert not allowed(FORMS["columns"], body)
    uniform = {"dataframe_split": {"columns": ["bp", "bmi"], "data": [[101, [32.1]]]}}
    assert allowed(FORMS["uniform-columns"], uniform) and taken(FORMS["uniform-columns"], uniform) is None
