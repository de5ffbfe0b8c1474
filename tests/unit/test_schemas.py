"""Validation of request rows against the model's signature, the response's batching, the service settings."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic_core import PydanticCustomError

from service.batching import PredictResponseContainer
from service.model_loader import InputSpec
from service.schemas import PredictResponse, ServedModel, parse_instances
from service.settings import ServiceSettings, bento_model_name

SPEC = InputSpec(n_features=4, dtype=np.dtype(np.float32))


def error(value: object, spec: InputSpec = SPEC, max_rows: int = 3) -> str:
    with pytest.raises(PydanticCustomError) as caught:
        parse_instances(value, spec, max_rows)
    return caught.value.message()


def test_rows_become_an_array_of_the_signature_dtype() -> None:
    rows = parse_instances([[0, 1, 2, 3], [0.5, 16, 1e3, -2]], SPEC, max_rows=3)
    assert rows.dtype == np.float32
    assert rows.shape == (2, 4)
    np.testing.assert_array_equal(rows[1], np.array([0.5, 16, 1e3, -2], dtype=np.float32))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([[1, 2, 3]], "row 0: has 3 values, the model takes 4"),
        ([[1, 2, 3, 4], [1, 2, 3, 4, 5]], "row 1: has 5 values, the model takes 4"),
        ([[1, 2, "x", 4]], "row 0, field 2: expected a number, got a string ('x')"),
        ([[1, 2, 3, 4], [1, None, 3, 4]], "row 1, field 1: expected a number, got null"),
        ([[1, 2, 3, float("nan")]], "row 0, field 3: nan is not a finite number"),
        ([[float("-inf"), 2, 3, 4]], "row 0, field 0: -inf is not a finite number"),
        ([[1e39, 2, 3, 4]], "row 0, field 0: 1e+39 is out of range for float32"),
        ([[[1, 2, 3, 4]]], "row 0: has 1 values, the model takes 4"),
        ([1], "row 0: expected a list of 4 numbers, got int"),
        ([], "no rows: send at least one row"),
        ([[1, 2, 3, 4]] * 4, "4 rows; at most 3 rows per request"),
        ("1,2,3,4", "expected a list of rows of 4 numbers, got a string ('1,2,3,4')"),
        ({"a": 1}, "expected a list of rows of 4 numbers, got an object"),
    ],
)
def test_bad_rows_are_named_by_row_and_field(value: object, expected: str) -> None:
    assert error(value) == expected


def test_several_problems_are_reported_together() -> None:
    message = error([["a", 2, 3, 4], [1, 2, 3], [1, 2, 3, float("inf")]])
    assert message.split("; ") == [
        "row 0, field 0: expected a number, got a string ('a')",
        "row 1: has 3 values, the model takes 4",
        "row 2, field 3: inf is not a finite number",
    ]


def test_braces_in_echoed_input_are_kept_verbatim() -> None:
    assert error([[1, 2, 3, "{x}"]]) == "row 0, field 3: expected a number, got a string ('{x}')"


def test_integer_signatures_refuse_fractions() -> None:
    spec = InputSpec(n_features=2, dtype=np.dtype(np.int32))
    assert parse_instances([[1, 2]], spec, 1).dtype == np.int32
    assert error([[1, 2.5]], spec) == "row 0, field 1: 2.5 is not an integer in the range of int32"


def test_batching_splits_and_joins_responses_by_request_rows() -> None:
    model = ServedModel(name="m", version="7")
    batch = PredictResponse(model=model, predictions=[1, 2, 3], probabilities=[[0.1], [0.2], [0.3]])
    parts = PredictResponseContainer.batch_to_batches(batch, [0, 1, 3])
    assert [part.predictions for part in parts] == [[1], [2, 3]]
    assert [part.probabilities for part in parts] == [[[0.1]], [[0.2], [0.3]]]
    assert all(part.model == model for part in parts)
    joined, indices = PredictResponseContainer.batches_to_batch(parts)
    assert indices == [0, 1, 3]
    assert joined.model_dump() == batch.model_dump()


def test_settings_refuse_requests_larger_than_a_batch() -> None:
    with pytest.raises(ValueError, match=r"MAX_ROWS \(65\) must not exceed MAX_BATCH_SIZE \(64\)"):
        ServiceSettings(max_rows=65, max_batch_size=64)


def test_bento_model_names_follow_bentoml_rules() -> None:
    assert bento_model_name("Digits Classifier/v2") == "digits-classifier-v2"
    assert ServiceSettings(model_name="digits-classifier").bento_model_tag == "digits-classifier:latest"
    assert ServiceSettings(model_tag="x:v1").bento_model_tag == "x:v1"
