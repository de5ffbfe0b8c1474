"""The one request contract (service.http.rows): body formats, rows of any fixed shape (numbers or strings, one
input or several named ones) checked against the model's contract, errors that name the input, row and field;
the answers, one output or several; the service settings."""

from __future__ import annotations

import numpy as np
import pytest

from service.http.rows import RequestError, parse_body, parse_rows
from service.http.schemas import answer_model, answer_of, request_schema
from service.models.contract import STRING, ModelContract, Output, Tensor, join_rows, split_outputs
from service.settings import ServiceSettings, bento_model_name

F32 = np.dtype(np.float32)
FLAT = ModelContract.single("classification", Tensor((4,), F32, "x"), Tensor((3,), F32, "y"))
IMAGE = ModelContract.single("classification", Tensor((2, 2, 1), F32, "x"), Tensor((3,), F32, "y"))
NAMED = ModelContract.single(
    "regression", Tensor((3,), F32, "x"), Tensor((1,), F32, "y"), feature_names=("age", "bmi", "bp")
)
# A structured-data model: one named input a column, a string among them; two outputs.
TABLE = ModelContract(
    (
        Tensor((1,), F32, "alcohol"),
        Tensor((1,), STRING, "region"),
        Tensor((2,), np.dtype(np.int32), "counts"),
    ),
    (
        Output(Tensor((3,), F32, "cultivar"), "classification", ("a", "b", "c")),
        Output(Tensor((1,), F32, "quality"), "regression"),
    ),
)
COLUMNS = ModelContract(TABLE.inputs[:2], TABLE.outputs)
TEXT = ModelContract.single("classification", Tensor((), STRING, "text"), Tensor((1,), F32, "positive"))


def error(value: object, contract: ModelContract = FLAT, max_rows: int = 3) -> str:
    with pytest.raises(RequestError) as caught:
        parse_rows(value, contract.input, max_rows)
    return str(caught.value)


def body_error(body: object, contract: ModelContract = NAMED) -> str:
    with pytest.raises(RequestError) as caught:
        parse_body(body, contract, 3)
    return str(caught.value)


def test_rows_become_an_array_of_the_signature_dtype() -> None:
    rows = parse_rows([[0, 1, 2, 3], [0.5, 16, 1e3, -2]], FLAT.input, max_rows=3)
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
    assert parse_rows(good, IMAGE.input, 2).shape == (1, 2, 2, 1)
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
    contract = ModelContract.single(
        "classification", Tensor((2,), np.dtype(np.int32), "x"), Tensor((2,), F32, "y")
    )
    assert parse_rows([[1, 2]], contract.input, 1).dtype == np.int32
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
        np.testing.assert_array_equal(parse_body(body, NAMED, 3)["x"], expected)


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


def test_named_inputs_in_every_format_give_the_same_rows_of_each_input() -> None:
    bodies = [
        {"inputs": {"alcohol": [12.5, 13.0], "region": ["north", "south"]}},
        {"inputs": {"alcohol": [[12.5], [13.0]], "region": [["north"], ["south"]]}},
        {"instances": [{"alcohol": 12.5, "region": "north"}, {"region": "south", "alcohol": 13.0}]},
        {"dataframe_records": [{"alcohol": 12.5, "region": "north"}, {"alcohol": 13.0, "region": ["south"]}]},
    ]
    for body in bodies:
        rows = parse_body(body, COLUMNS, 3)
        np.testing.assert_array_equal(rows["alcohol"], np.array([[12.5], [13.0]], dtype=np.float32))
        assert rows["region"].dtype == STRING and rows["region"].tolist() == [["north"], ["south"]]
    # Positional rows only where every column is of one type (an OpenAPI 3.0 document cannot type each position).
    split = {
        "dataframe_split": {"columns": ["region", "alcohol"], "data": [["north", 12.5], ["south", 13.0]]}
    }
    assert body_error(split, COLUMNS).startswith("dataframe_split needs inputs of one dtype and shape")
    uniform = ModelContract((TABLE.inputs[0], Tensor((1,), F32, "acidity")), TABLE.outputs)
    rows = parse_body(
        {"dataframe_split": {"columns": ["acidity", "alcohol"], "data": [[3.1, 12.5]]}}, uniform, 3
    )
    np.testing.assert_array_equal(rows["acidity"], np.array([[3.1]], F32))
    np.testing.assert_array_equal(rows["alcohol"], np.array([[12.5]], F32))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"inputs": {"alcohol": [1.0], "region": ["n"]}}, "inputs: missing input 'counts'"),
        (
            {"inputs": {"alcohol": [1.0], "region": ["n"], "counts": [[1, 2]], "x": [1]}},
            "inputs: unknown input 'x'; the model takes alcohol, region, counts",
        ),
        (
            {"inputs": {"alcohol": [1.0, 2.0], "region": ["n"], "counts": [[1, 2]]}},
            "every input needs the same number of rows, got alcohol 2, region 1, counts 1",
        ),
        (
            {"inputs": {"alcohol": [1.0], "region": [3], "counts": [[1, 2]]}},
            "input 'region', row 0, field 0: expected a string, got a number",
        ),
        (
            {"inputs": {"alcohol": ["x"], "region": ["n"], "counts": [[1, 2.5]]}},
            "input 'alcohol', row 0, field 0: expected a number, got a string ('x')",
        ),
        (
            {"inputs": {"alcohol": [1.0], "region": ["n"], "counts": [[1, 2.5]]}},
            "input 'counts', row 0, field 1: 2.5 is not an integer in the range of int32",
        ),
        (
            {"dataframe_records": [{"alcohol": 1.0}]},
            "dataframe_records needs a model whose every input is one value a row",
        ),
        (
            {"inputs": [[1.0]]},
            "inputs must be an object of each input's rows (alcohol, region, counts), got a list",
        ),
    ],
)
def test_named_inputs_refuse_what_is_wrong_naming_the_input(body: object, expected: str) -> None:
    assert body_error(body, TABLE).startswith(expected)


def test_a_string_input_takes_strings_and_refuses_anything_else() -> None:
    rows = parse_body({"instances": ["a fine film", "dull"]}, TEXT, 3)["text"]
    assert rows.dtype == STRING and rows.shape == (2,)
    assert error([["a fine film"]], TEXT) == "row 0: expected a string, got a list of 1 items"
    assert error([1], TEXT) == "row 0: expected a string, got a number"


def test_several_outputs_answer_each_under_its_name_and_one_output_answers_as_ever() -> None:
    outputs = {"cultivar": np.array([[0.1, 0.7, 0.2]], F32), "quality": np.array([[6.5]], F32)}
    body = TABLE.answer(outputs)
    assert body["outputs"]["cultivar"]["classes"] == ["b"] and body["outputs"]["quality"]["predictions"] == [
        6.5
    ]
    answer = answer_of(answer_model(TABLE), "wine", "3", body)
    assert answer.model_dump()["outputs"]["cultivar"]["predictions"] == [1]
    single = answer_of(answer_model(FLAT), "m", "1", FLAT.answer({"y": outputs["cultivar"]}))
    assert single.model_dump() == {
        "model": {"name": "m", "version": "1"},
        "predictions": [1],
        "probabilities": outputs["cultivar"].astype(np.float64).tolist(),
    }


def test_a_batch_joins_requests_rows_and_splits_their_outputs_back() -> None:
    first = {"x": np.zeros((1, 4), F32)}
    second = {"x": np.ones((2, 4), F32)}
    joined = join_rows([first, second])
    assert joined["x"].shape == (3, 4)
    parts = split_outputs({"y": np.arange(3)}, [1, 2])
    assert [part["y"].tolist() for part in parts] == [[0], [1, 2]]


@pytest.mark.parametrize(
    ("contract", "outputs"),
    [
        (
            TABLE,
            {
                "cultivar": np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], F32),
                "quality": np.array([[6.5], [5.0], [7.25]], F32),
            },
        ),
        (
            ModelContract(
                (Tensor((4,), F32, "x"),), (Output(Tensor((3,), F32, "y"), "multilabel", ("a", "b", "c")),)
            ),
            {"y": np.array([[0.9, 0.1, 0.7], [0.2, 0.6, 0.1], [0.1, 0.1, 0.1]], F32)},
        ),
        (
            ModelContract.single("regression", Tensor((4,), F32, "x"), Tensor((2,), F32, "y")),
            {"y": np.array([[1.5, 2.0], [3.0, 4.5], [5.0, 6.0]], F32)},
        ),
    ],
)
def test_a_batchs_answers_cut_by_row_counts_are_each_requests_own(
    contract: ModelContract, outputs: dict
) -> None:
    """Answers are built once a batch and cut: each is what the request's rows alone would have been answered."""
    alone = [contract.answer(part) for part in split_outputs(outputs, [1, 2])]
    assert contract.answers(outputs, [1, 2]) == alone
    assert contract.answers(outputs, [3]) == [contract.answer(outputs)]


def test_settings_refuse_requests_larger_than_a_batch() -> None:
    with pytest.raises(ValueError, match=r"MAX_ROWS \(65\) must not exceed MAX_BATCH_SIZE \(64\)"):
        ServiceSettings(max_rows=65, max_batch_size=64)


def test_bento_model_names_follow_bentoml_rules() -> None:
    assert bento_model_name("Digits Classifier/v2") == "digits-classifier-v2"
    assert ServiceSettings(model_name="digits-classifier").bento_model_tag == "digits-classifier:latest"
    assert ServiceSettings(model_tag="x:v1").bento_model_tag == "x:v1"
