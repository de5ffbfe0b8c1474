"""The example notebooks of named tensors end to end (tests/support/examples.py), each trained by
`python -m pipeline train`, packaged, served by `bentoml serve` from the project's folder and asked by name through
/predict, the Open Inference Protocol (tritonclient, binary tensors) and a job: each answers the notebook model's own
outputs.

notebooks/examples/wine_notes.ipynb        two inputs (12 numbers; a string a `TextVectorization` inside the model
                                           takes), two outputs (a classifier, a regressor), a custom layer kept in
                                           a module beside the notebook: served from the project's folder, where
                                           that module is not on the path, it loads from the version's `code/`
notebooks/examples/diabetes_columns.ipynb  one input per column, as Keras's structured-data tutorials build them:
                                           an int32, a string through `StringLookup`, eight numbers; one output
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from support.examples import ROWS, Served, trained_and_served

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

EXAMPLES = PROJECT_ROOT / "notebooks" / "examples"
WINE, COLUMNS = "wine-notes", "diabetes-columns"
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def wine(mongo_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(WINE)
    with trained_and_served(EXAMPLES / "wine_notes.ipynb", mongo_url, amqp_url, folder) as served:
        assert (served.model, served.version) == (WINE, "1")  # as the notebook's parameters cell names it
        yield served


@pytest.fixture(scope="module")
def columns(mongo_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(COLUMNS)
    with trained_and_served(EXAMPLES / "diabetes_columns.ipynb", mongo_url, amqp_url, folder) as served:
        assert (served.model, served.version) == (COLUMNS, "1")
        yield served


def assert_answers_the_wine_notebooks(answer: dict[str, Any], wine: Served) -> None:
    """Each output by name, in its task's shape, the notebook model's own answer."""
    assert set(answer["outputs"]) == {"cultivar", "alcohol"}, answer
    cultivar, alcohol = answer["outputs"]["cultivar"], answer["outputs"]["alcohol"]
    expected = wine.outputs["cultivar"]
    np.testing.assert_allclose(cultivar["probabilities"], expected, rtol=RTOL, atol=ATOL)
    assert cultivar["predictions"] == expected.argmax(axis=1).tolist()
    assert cultivar["classes"] == [f"class_{label}" for label in expected.argmax(axis=1)]
    np.testing.assert_allclose(alcohol["predictions"], wine.outputs["alcohol"][:, 0], rtol=RTOL, atol=ATOL)


def assert_answers_the_columns_notebooks(answer: dict[str, Any], columns: Served) -> None:
    (progression,) = columns.outputs.values()
    np.testing.assert_allclose(answer["predictions"], progression[:, 0], rtol=RTOL, atol=ATOL)


def by_name(served: Served) -> dict[str, list[Any]]:
    return {name: values.tolist() for name, values in served.rows.items()}


def records(served: Served) -> list[dict[str, Any]]:
    """Each row as an object of every input's value; a column of one value a row gives that value."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            listed = value.tolist()
            return listed[0] if len(listed) == 1 else listed
        return value.item() if isinstance(value, np.generic) else value

    return [{name: plain(values[i]) for name, values in served.rows.items()} for i in range(ROWS)]


def test_the_custom_layers_module_ships_with_the_model(wine: Served) -> None:
    assert wine.artifacts == ["code/wine_layers.py"], wine.artifacts


def test_model_shows_each_named_tensor_and_each_outputs_metrics(wine: Served, columns: Served) -> None:
    described = wine.client.get("/model").json()
    contract = described["contract"]
    assert [(t["name"], t["dtype"], t["shape"]) for t in contract["inputs"]] == [
        ("measurements", "float32", [-1, 12]),
        ("note", "string", [-1]),
    ], contract
    assert [(t["name"], t["task"]) for t in contract["outputs"]] == [
        ("cultivar", "classification"),
        ("alcohol", "regression"),
    ], contract
    assert {"cultivar/test_accuracy", "alcohol/test_rmse"} <= set(described["metrics"]), described

    contract = columns.client.get("/model").json()["contract"]
    dtypes = {t["name"]: (t["dtype"], tuple(t["shape"])) for t in contract["inputs"]}
    assert dtypes.pop("age") == ("int32", (-1, 1)) and dtypes.pop("sex") == ("string", (-1, 1)), contract
    assert set(dtypes.values()) == {("float32", (-1, 1))} and len(dtypes) == 8, contract


@pytest.mark.parametrize(
    ("which", "string_input"), [("wine", "note"), ("columns", "sex")], ids=["wine", "columns"]
)
def test_a_model_with_a_string_input_is_served_by_tensorflow_and_says_why(
    which: str, string_input: str, request: pytest.FixtureRequest
) -> None:
    """No lean form for a string input (ONNX Runtime would split and hash otherwise): the pipeline, GET /model,
    the API's and the worker's startup lines say TensorFlow answers, and why."""
    served: Served = request.getfixturevalue(which)
    why = f"no lean form: string input {string_input!r}"
    assert f"served by tensorflow: {why}" in served.train_stdout, served.train_stdout
    described = served.client.get("/model").json()
    assert (described["runtime"], described["flavor"]) == ("tensorflow", "keras"), described
    assert described["runtime_reason"].startswith(why), described
    assert f"version {served.version} (pinned, tensorflow)" in served.worker_log.read_text()


def test_rows_by_input_name_and_as_objects_answer_the_notebooks_outputs(wine: Served) -> None:
    response = wine.client.post("/predict", json={"inputs": by_name(wine)})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == {"name": WINE, "version": "1"}
    assert_answers_the_wine_notebooks(response.json(), wine)

    objects = records(wine)
    assert isinstance(objects[0]["note"], str), objects[0]
    response = wine.client.post("/predict", json={"instances": objects})
    assert response.status_code == 200, response.text
    assert_answers_the_wine_notebooks(response.json(), wine)


def test_rows_as_records_of_columns_answer_the_notebooks_outputs(columns: Served) -> None:
    rows = records(columns)
    assert isinstance(rows[0]["sex"], str) and isinstance(rows[0]["age"], int), rows[0]
    for body in ({"dataframe_records": rows}, {"inputs": by_name(columns)}):
        response = columns.client.post("/predict", json=body)
        assert response.status_code == 200, (list(body), response.text)
        assert_answers_the_columns_notebooks(response.json(), columns)
    # Columns of several types are not taken as positional rows: OpenAPI 3.0 cannot type each position.
    split = {"dataframe_split": {"columns": list(rows[0]), "data": [list(row.values()) for row in rows]}}
    response = columns.client.post("/predict", json=split)
    assert response.status_code == 422 and "send dataframe_records" in response.json()["detail"], (
        response.text
    )


def test_a_value_of_the_wrong_kind_is_a_422_naming_the_input_row_and_field(
    wine: Served, columns: Served
) -> None:
    named = by_name(wine)
    wrong_number = {"measurements": [[*named["measurements"][0][:11], "x"]], "note": named["note"][:1]}
    response = wine.client.post("/predict", json={"inputs": wrong_number})
    assert response.status_code == 422, response.text
    assert (
        response.json()["detail"]
        == "input 'measurements', row 0, field 11: expected a number, got a string ('x')"
    )

    wrong_string = {"measurements": named["measurements"][:1], "note": [3]}
    response = wine.client.post("/predict", json={"inputs": wrong_string})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "input 'note', row 0: expected a string, got a number"

    row = records(columns)[0]
    response = columns.client.post("/predict", json={"dataframe_records": [row | {"age": 59.5}]})
    assert response.status_code == 422, response.text
    assert (
        response.json()["detail"]
        == "input 'age', row 0, field 0: 59.5 is not an integer in the range of int32"
    )


def test_tritonclient_with_binary_tensors_answers_the_notebooks_outputs(
    wine: Served, columns: Served
) -> None:
    """FP32, INT32 and BYTES inputs as tritonclient sends them by default (the protocol's binary extension)."""
    import tritonclient.http as triton

    datatypes = {"float32": "FP32", "int32": "INT32", "object": "BYTES"}
    for served in (wine, columns):
        client = triton.InferenceServerClient(served.url.removeprefix("http://"))
        model = served.model
        assert client.is_server_ready() and client.is_model_ready(model)
        inputs = []
        for name, values in served.rows.items():
            tensor = triton.InferInput(name, list(values.shape), datatypes[values.dtype.name])
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
        assert {"FP32", "BYTES"} <= {t.datatype() for t in inputs}
        answer = client.infer(model, inputs)
        for name, expected in served.outputs.items():
            np.testing.assert_allclose(answer.as_numpy(name), expected, rtol=RTOL, atol=ATOL)
    assert "INT32" in {datatypes[values.dtype.name] for values in columns.rows.values()}


def test_a_job_answers_what_predict_answers(wine: Served, columns: Served) -> None:
    view = wine.job({"inputs": by_name(wine)})
    assert view["model"] == {"name": WINE, "version": "1"}
    assert_answers_the_wine_notebooks(view["result"], wine)

    view = columns.job({"dataframe_records": records(columns)})
    assert view["model"] == {"name": COLUMNS, "version": "1"}
    assert_answers_the_columns_notebooks(view["result"], columns)


def test_the_requests_docs_serving_shows_for_the_examples_answer(wine: Served, columns: Served) -> None:
    """docs/serving.md's curl bodies for these examples, sent as they are shown."""
    doc = (PROJECT_ROOT / "docs" / "serving.md").read_text()
    bodies = [json.loads(body) for body in re.findall(r"/predict .*?\n\s+-d '(\{.*?\})'", doc)]
    wine_bodies = [body for body in bodies if "note" in json.dumps(body)]
    column_bodies = [body for body in bodies if "dataframe_records" in body]
    assert len(wine_bodies) == 2 and len(column_bodies) == 1, bodies
    answers = [wine.client.post("/predict", json=body) for body in wine_bodies]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json() and set(answers[0].json()["outputs"]) == {
        "cultivar",
        "alcohol",
    }
    answer = columns.client.post("/predict", json=column_bodies[0])
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 1
