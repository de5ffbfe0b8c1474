"""The example notebooks end to end (tests/support/examples.py): each trained by `python -m pipeline train`,
packaged, served by `bentoml serve` and answered through a real `python -m service.jobs.worker`, with the rows and
answers of its own run.

notebooks/examples/diabetes_regressor.ipynb  regression, 10 named features: [-1, 10] -> [-1, 1]
notebooks/examples/digits_conv2d.ipynb       classification of 8x8x1 images: [-1, 8, 8, 1] -> [-1, 10]
notebooks/examples/iris_sequential.ipynb     Keras's getting-started `Sequential` (Normalization, Dropout):
                                             [-1, 4] -> [-1, 3], the classes by name
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from support.examples import Served, trained_and_served

from service.http.rows import number_limit
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

RTOL, ATOL = 1e-4, 1e-5
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Example:
    notebook: str
    model_name: str
    task: str
    input_shape: list[int]  # with the batch dimension, as GET /model shows it
    feature_names: tuple[str, ...] | None = None
    class_names: tuple[str, ...] = tuple(str(digit) for digit in range(10))


def _diabetes_features() -> tuple[str, ...]:
    from sklearn.datasets import load_diabetes

    return tuple(load_diabetes().feature_names)


EXAMPLES = [
    Example(
        "notebooks/examples/diabetes_regressor.ipynb",
        "diabetes-regressor",
        "regression",
        [-1, 10],
        _diabetes_features(),
    ),
    Example("notebooks/examples/digits_conv2d.ipynb", "digits-conv2d", "classification", [-1, 8, 8, 1]),
    Example(
        "notebooks/examples/iris_sequential.ipynb",
        "iris-sequential",
        "classification",
        [-1, 4],
        class_names=("setosa", "versicolor", "virginica"),
    ),
]


@dataclass(frozen=True)
class Trained:
    example: Example
    served: Served
    rows: np.ndarray  # the run's first held-out rows (a model of one input: one array)
    outputs: np.ndarray  # the notebook model's own answers for them


@pytest.fixture(scope="module", params=EXAMPLES, ids=[Path(e.notebook).stem for e in EXAMPLES])
def trained(
    request: pytest.FixtureRequest,
    mongo_url: str,
    amqp_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Trained]:
    example: Example = request.param
    folder = tmp_path_factory.mktemp(example.model_name)
    with trained_and_served(PROJECT_ROOT / example.notebook, mongo_url, amqp_url, folder) as served:
        (rows,), (outputs,) = served.rows.values(), served.outputs.values()
        yield Trained(example, served, rows, outputs)


@pytest.fixture(scope="module")
def client(trained: Trained) -> httpx.Client:
    return trained.served.client


def assert_answers_outputs(answer: dict[str, Any], trained: Trained) -> None:
    """The service's answer is the notebook model's own for the same rows."""
    if trained.example.task == "regression":
        np.testing.assert_allclose(answer["predictions"], trained.outputs[:, 0], rtol=RTOL, atol=ATOL)
    else:
        np.testing.assert_allclose(answer["probabilities"], trained.outputs, rtol=RTOL, atol=ATOL)
        assert answer["predictions"] == trained.outputs.argmax(axis=1).tolist()
        names = trained.example.class_names
        assert answer["classes"] == [names[label] for label in trained.outputs.argmax(axis=1)]


def test_the_pipeline_registers_the_run_and_its_lean_form_serves_it(trained: Trained) -> None:
    """Every example here converts: the pipeline says ONNX Runtime answers it, and so do /model and the worker."""
    served = trained.served
    assert f"run {served.run_id}: registered {trained.example.model_name} version 1" in served.train_stdout
    assert "served by onnxruntime: lean form equal to the Keras model" in served.train_stdout
    described = served.client.get("/model").json()
    assert (described["runtime"], described["flavor"]) == ("onnxruntime", "onnx"), described
    assert f"version {served.version} (pinned, onnxruntime)" in served.worker_log.read_text()


def test_predict_answers_the_notebook_models_outputs_for_its_held_out_rows(
    client: httpx.Client, trained: Trained
) -> None:
    assert trained.rows.shape[1:] == tuple(trained.example.input_shape[1:])
    response = client.post("/predict", json={"instances": trained.rows.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": trained.example.model_name, "version": "1"}
    assert_answers_outputs(body, trained)


def test_named_features_rows(client: httpx.Client, trained: Trained) -> None:
    names = trained.example.feature_names
    if names is None:  # a model without feature names refuses them, saying what to send
        records = [{"pixel": 0.0}]
        response = client.post("/predict", json={"dataframe_records": records})
        assert response.status_code == 422, response.text
        assert "needs named features" in response.json()["detail"]
        return
    records = [dict(zip(names, row.tolist(), strict=True)) for row in trained.rows]
    response = client.post("/predict", json={"dataframe_records": records})
    assert response.status_code == 200, response.text
    assert_answers_outputs(response.json(), trained)

    missing = [{name: value for name, value in record.items() if name != "bmi"} for record in records[:2]]
    response = client.post("/predict", json={"dataframe_records": missing})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "row 0: missing feature 'bmi'", response.text


def test_model_shows_task_and_input_shape(client: httpx.Client, trained: Trained) -> None:
    described = client.get("/model").json()
    assert described["run_id"] == trained.served.run_id, described
    found = described["contract"]
    assert found["outputs"][0]["task"] == trained.example.task, described
    assert found["inputs"][0]["shape"] == trained.example.input_shape, described
    if trained.example.feature_names:
        assert found["feature_names"] == list(trained.example.feature_names), described


def _row_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of one row of `instances`: of its rows as lists, one of two alternatives with named features
    (the other: every row an object)."""
    instances = schema["properties"]["instances"]
    rows = [
        rows["items"] for rows in instances.get("anyOf", [instances]) if rows["items"].get("type") == "array"
    ]
    assert len(rows) == 1, instances
    return rows[0]


def test_openapi_predict_request_shows_the_row_shape(client: httpx.Client, trained: Trained) -> None:
    body = client.get("/docs.json").json()["paths"]["/predict"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["title"] == "PredictRequest", schema
    row = _row_schema(schema)
    for size in trained.example.input_shape[1:]:
        assert row["type"] == "array" and (row["minItems"], row["maxItems"]) == (size, size), row
        row = row["items"]
    limit = number_limit(np.dtype(np.float32))  # past float32's max, what still rounds to it
    assert row == {"type": "number", "minimum": -limit, "maximum": limit} and limit > FLOAT32_MAX, row
    if trained.example.feature_names:
        records = schema["properties"]["dataframe_records"]["items"]
        assert records["required"] == list(trained.example.feature_names)
        assert records["additionalProperties"] is False


def test_a_job_answers_what_predict_answers(client: httpx.Client, trained: Trained) -> None:
    rows = trained.rows.tolist()
    view = trained.served.job({"instances": rows})
    predicted = client.post("/predict", json={"instances": rows}).json()
    assert view["model"] == predicted["model"]
    result = view["result"]
    assert set(result) == set(predicted) - {"model"}, (result.keys(), predicted.keys())
    np.testing.assert_allclose(result["predictions"], predicted["predictions"], rtol=RTOL, atol=ATOL)
    if trained.example.task == "classification":
        assert result["classes"] == predicted["classes"]
        np.testing.assert_allclose(result["probabilities"], predicted["probabilities"], rtol=RTOL, atol=ATOL)
    assert_answers_outputs(result, trained)
