"""The one request contract (service.requests): body formats, rows of any fixed shape checked against the model's
contract, errors that name the row and field; the answers' batching; the service settings."""

from __future__ import annotations

import numpy as np
import pytest

from service.http.rows import RequestError, parse_body, parse_rows
from service.http.schemas import ServedModel, answer_model, request_schema
from service.models.contract import ModelContract, Tensor
from service.serving.answer_container import AnswerContainer
from service.settings import ServiceSettings, bento_model_name

F32 = np.dtype(np.float32)
FLAT = ModelContract("classification", Tensor((4,), F32), Tensor((3,), F32))
IMAGE = ModelContract("classification", Tensor((2, 2, 1), F32), Tensor((3,), F32))
NAMED = ModelContract("regression", Tensor((3,), F32), Tensor((1,), F32), feature_names=("age", "bmi", "bp"))


def error(value: object, contract: ModelContract = FLAT, max_rows: int = 3) -> str:
    with pytest.raises(RequestError) as caught:
        parse_rows(value, contract, max_rows)
    return str(caught.value)


def body_error(body: object, contract: ModelContract = NAMED) -> str:
    with pytest.raises(RequestError) as caught:
        parse_body(body, contract, 3)
    return str(caught.value)


def test_rows_become_an_array_of_the_signature_dtype() -> None:
    rows = parse_rows([[0, 1, 2, 3], [0.5, 16, 1e3, -2]], FLAT, max_rows=3)
    assert rows.dtype == np.float32
    assert rows.shape == (2, 4)
    np.testing.assert_array_equal(rows[1], np.array([0.5, 16, 1e3, -2], dtype=np.float32))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([[1, 2, 3]], "row 0: has 3 values, the model takes 4 (rows of shape [-1, 4])"),
        ([[1, 2, 3, 4], [1, 2, 3, 4, 5]], "row 1: has 5 values, the model takes 4 (rows of shape [-1, 4])"),
        ([[1, 2, "x", 4]], "row 0, field 2: expected a number, got a string ('x')"),
        ([[1, 2, 3, 4], [1, None, 3, 4]], "row 1, field 1: expected a number, got null"),
        ([[1, 2, 3, float("nan")]], "row 0, field 3: nan is not a finite number"),
        ([[float("-inf"), 2, 3, 4]], "row 0, field 0: -inf is not a finite number"),
        ([[1e39, 2, 3, 4]], "row 0, field 0: 1e+39 is out of range for float32"),
        ([[True, 2, 3, 4]], "row 0, field 0: expected a number, got a boolean"),
        ([[[1, 2, 3, 4]]], "row 0: has 1 values, the model takes 4 (rows of shape [-1, 4])"),
        ([1], "row 0: expected a list of 4 numbers, got a number"),
        ([], "no rows: send at least one row"),
        ([[1, 2, 3, 4]] * 4, "4 rows; at most 3 rows per request"),
        ("1,2,3,4", "expected a list of rows of shape [-1, 4], got a string ('1,2,3,4')"),
        ({"a": 1}, "expected a list of rows of shape [-1, 4], got an object"),
    ],
)
def test_bad_rows_are_named_by_row_and_field(value: object, expected: str) -> None:
    assert error(value) == expected


def test_several_problems_are_reported_together() -> None:
    message = error([["a", 2, 3, 4], [1, 2, 3], [1, 2, 3, float("inf")]])
    assert message.split("; ") == [
        "row 0, field 0: expected a number, got a string ('a')",
        "row 1: has 3 values, the model takes 4 (rows of shape [-1, 4])",
        "row 2, field 3: inf is not a finite number",
    ]


def test_rows_of_higher_rank_are_checked_at_every_level() -> None:
    good = [[[[0.0], [1.0]], [[2.0], [3.0]]]]
    assert parse_rows(good, IMAGE, 2).shape == (1, 2, 2, 1)
    assert error([[[[0.0], [1.0]], [[2.0]]]], IMAGE) == "row 0, field [1]: has 1 values, the model takes 2"
    assert error([[[[0.0], [1.0]], [[2.0], ["x"]]]], IMAGE) == (
        "row 0, field [1][1][0]: expected a number, got a string ('x')"
    )
    assert (
        error([[0.0, 1.0, 2.0, 3.0]], IMAGE)
        == "row 0: has 4 values, the model takes 2 (rows of shape [-1, 2, 2, 1])"
    )
    assert error([[[0.0, 1.0], [2.0, 3.0]]], IMAGE).startswith(
        "row 0, field [0][0]: expected a list of 1 numbers, got a number"
    )


def test_an_error_never_echoes_a_long_input() -> None:
    message = error([[1, 2, 3, "y" * 10_000]])
    assert len(message) < 100 and message.endswith("('yyyyyyyyyyyyyyyyyyy...)")


def test_integer_signatures_refuse_fractions() -> None:
    contract = ModelContract("classification", Tensor((2,), np.dtype(np.int32)), Tensor((2,), F32))
    assert parse_rows([[1, 2]], contract, 1).dtype == np.int32
    assert error([[1, 2.5]], contract) == "row 0, field 1: 2.5 is not an integer in the range of int32"


def test_every_mlflow_scoring_format_gives_the_same_rows() -> None:
    expected = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    bodies = [
        {"instances": [[1, 2, 3], [4, 5, 6]]},
        {"inputs": [[1, 2, 3], [4, 5, 6]]},
        {"instances": [{"bmi": 2, "age": 1, "bp": 3}, {"age": 4, "bmi": 5, "bp": 6}]},
        {"dataframe_records": [{"age": 1, "bmi": 2, "bp": 3}, {"age": 4, "bmi": 5, "bp": 6}]},
        {"dataframe_split": {"columns": ["bp", "age", "bmi"], "data": [[3, 1, 2], [6, 4, 5]]}},
        {"dataframe_split": {"data": [[1, 2, 3], [4, 5, 6]]}},
    ]
    for body in bodies:
        np.testing.assert_array_equal(parse_body(body, NAMED, 3), expected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"dataframe_records": [{"age": 1, "bmi": 2}]}, "row 0: missing feature 'bp'"),
        (
            {"dataframe_records": [{"age": 1, "bmi": 2, "bp": 3, "sex": 1}]},
            "row 0: unknown feature 'sex'; the model takes age, bmi, bp",
        ),
        (
            {"dataframe_split": {"columns": ["age", "bmi", "x"], "data": [[1, 2, 3]]}},
            "dataframe_split columns: unknown feature 'x'; the model takes age, bmi, bp",
        ),
        (
            {"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]},
            "send the rows under exactly one of instances, inputs, dataframe_split, dataframe_records, not 2",
        ),
        ({}, "send the rows under exactly one of instances, inputs, dataframe_split, dataframe_records"),
        (
            {"instances": [[1, 2, 3]], "params": {}},
            "unknown key 'params'; send one of instances, inputs, dataframe_split, dataframe_records",
        ),
        (
            [[1, 2, 3]],
            "expected a JSON object with one of instances, inputs, dataframe_split, dataframe_records, got a list of 1 items",
        ),
    ],
)
def test_bad_bodies_say_what_is_wrong(body: object, expected: str) -> None:
    assert body_error(body) == expected


def test_named_formats_need_feature_names() -> None:
    assert body_error({"dataframe_records": [{"a": 1}]}, FLAT) == (
        "dataframe_records needs named features, and this model's features have no names: send instances, rows "
        "of shape [-1, 4]"
    )


def test_the_documented_request_shows_the_real_row_shape() -> None:
    schema = request_schema("PredictRequest", IMAGE, 8)
    rows = schema["properties"]["instances"]
    assert rows["maxItems"] == 8
    assert [
        rows["items"]["minItems"],
        rows["items"]["items"]["minItems"],
        rows["items"]["items"]["items"]["minItems"],
    ] == [2, 2, 1]
    assert "dataframe_records" not in schema["properties"]
    assert set(request_schema("PredictRequest", NAMED, 8)["properties"]) == {
        "instances",
        "inputs",
        "dataframe_records",
        "dataframe_split",
    }


def test_batching_splits_and_joins_answers_by_request_rows() -> None:
    model = ServedModel(name="m", version="7")
    named = ModelContract("classification", Tensor((4,), F32), Tensor((3,), F32), class_names=("a", "b", "c"))
    answer = answer_model(named)
    batch = answer(
        model=model, predictions=[1, 2, 0], classes=["b", "c", "a"], probabilities=[[0.1], [0.2], [0.3]]
    )
    parts = AnswerContainer.batch_to_batches(batch, [0, 1, 3])
    assert [part.predictions for part in parts] == [[1], [2, 0]]
    assert [part.classes for part in parts] == [["b"], ["c", "a"]]
    assert [part.probabilities for part in parts] == [[[0.1]], [[0.2], [0.3]]]
    assert all(part.model == model for part in parts)
    joined, indices = AnswerContainer.batches_to_batch(parts)
    assert indices == [0, 1, 3]
    assert joined.model_dump() == batch.model_dump()


def test_settings_refuse_requests_larger_than_a_batch() -> None:
    with pytest.raises(ValueError, match=r"MAX_ROWS \(65\) must not exceed MAX_BATCH_SIZE \(64\)"):
        ServiceSettings(max_rows=65, max_batch_size=64)


def test_bento_model_names_follow_bentoml_rules() -> None:
    assert bento_model_name("Digits Classifier/v2") == "digits-classifier-v2"
    assert ServiceSettings(model_name="digits-classifier").bento_model_tag == "digits-classifier:latest"
    assert ServiceSettings(model_tag="x:v1").bento_model_tag == "x:v1"
