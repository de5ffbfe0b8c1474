"""Every Keras model form people bring (tests/support/zoo.py), each taken as a notebook's model is: logged by
`pipeline.notebook.log_model` into one real MLflow store, checked where served (`python -m service.models.check`:
one fresh process, with nothing of the notebook, for all of them), then loaded by the service's loader and asked
through the served predictor (what /predict calls, from a JSON body) and the Open Inference Protocol's `infer`,
every output compared by name with the notebook model's own `predict_on_batch`. A form the pipeline refuses is
refused with the message the row names, and logs no model; a form logged but refused by the check where served is
refused there, in the same process, for what the row names, while every other form in that process passes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.zoo import FORMS, Form, write_code

from service.models.contract import ContractError, ModelContract, Outputs, read_contract

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

RTOL, ATOL = 1e-4, 1e-5  # the served graph against Keras's own predict_on_batch, in float32


@dataclass(frozen=True)
class Logged:
    x_test: Any
    model_uri: str | None  # what the run logged (None: no model)
    refusal: str | None = None  # what log_model said, refusing it
    model_dir: Path | None = None
    rows: Path | None = None  # the run's held-out rows, as the check where served reads them
    keras: Any = None  # the notebook model's own answers for its held-out rows
    where_served: str | None = None  # why the check where served refused it; None when it passed


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Logged]]:
    """Every form logged as its notebook would, in one store; the served ones checked in one fresh process,
    started before the first is logged (as the pipeline starts it beside the kernel)."""
    import mlflow

    from pipeline import evaluation, tracking
    from pipeline.lineage import MODEL_URI_TAG
    from pipeline.settings import PipelineSettings
    from service.models.quiet import quiet
    from service.models.registry import download_model

    quiet()
    folder = tmp_path_factory.mktemp("zoo")
    saved_uri, saved_path = os.environ.get("MLFLOW_TRACKING_URI"), list(sys.path)
    settings = PipelineSettings(data_dir=folder / "store", mlflow_tracking_uri=None, _env_file=None)
    logged: dict[str, Logged] = {}
    try:
        with evaluation.WhereServed() as where_served:
            client = tracking.connect(settings)
            experiment = tracking.experiment_id(client, settings)
            code = write_code(folder / "notebook")
            for form in FORMS:
                notebook = form.build(code)
                refusal = None
                with mlflow.start_run(experiment_id=experiment) as run:
                    try:
                        notebook.log()
                    except ContractError as exc:
                        refusal = str(exc)
                uri = client.get_run(run.info.run_id).data.tags.get(MODEL_URI_TAG)
                logged[form.id] = Logged(notebook.x_test, uri, refusal)
                if uri is not None and refusal is None:
                    logged[form.id] = replace(
                        logged[form.id],
                        model_dir=download_model(client, uri, folder / form.id / "model"),
                        rows=evaluation.held_out_rows(client, run.info.run_id, folder / form.id),
                        keras=notebook.answers(),
                    )
            served = {
                form_id: (found.model_dir, found.rows)
                for form_id, found in logged.items()
                if found.model_dir is not None and found.rows is not None
            }
            problems = where_served.problems(list(served.values()))
        for form_id, problem in zip(served, problems, strict=True):
            logged[form_id] = replace(logged[form_id], where_served=problem)
        yield logged
    finally:
        sys.path[:] = saved_path
        if saved_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_uri


def request_body(contract: ModelContract, x_test: Any) -> Any:
    """The held-out rows as a client sends them to /predict: JSON, by input name for a model of several."""
    if contract.single_input:
        return {"instances": np.asarray(x_test).tolist()}
    return {"inputs": {name: np.asarray(values).tolist() for name, values in x_test.items()}}


def infer_body(contract: ModelContract, rows: dict[str, np.ndarray]) -> dict[str, Any]:
    from service.http.open_inference import datatype

    return {
        "inputs": [
            {
                "name": tensor.name,
                "shape": list(rows[tensor.name].shape),
                "datatype": datatype(tensor),
                "data": rows[tensor.name].ravel().tolist(),
            }
            for tensor in contract.inputs
        ]
    }


def predictions(loaded: Any) -> Any:
    """The served predictor as the service builds it (batching on), for one event loop."""
    from service.models.source import ModelSource
    from service.serving.model_calls import ModelCalls
    from service.serving.predictions import Predictions

    return Predictions(
        ModelSource(loaded), ModelCalls(0.0), batching=True, max_batch_size=64, max_latency_ms=5000
    )


def assert_same(served: Outputs, keras: Outputs) -> float:
    """Every output by name as the notebook's model answered; the largest difference."""
    assert sorted(served) == sorted(keras)
    for name, values in keras.items():
        np.testing.assert_allclose(served[name], values, rtol=RTOL, atol=ATOL, err_msg=f"output {name!r}")
    return max(float(np.max(np.abs(served[name] - values))) for name, values in keras.items())


@pytest.mark.parametrize("form", FORMS, ids=[form.id for form in FORMS])
def test_form(zoo: dict[str, Logged], form: Form) -> None:
    found = zoo[form.id]
    if form.refused is not None:
        assert found.refusal is not None and re.search(form.refused, found.refusal), found.refusal
        assert found.model_uri is None, "a refused model was logged"
        return
    assert found.refusal is None, found.refusal
    assert found.model_dir is not None, "no model logged"
    if form.refused_where_served is not None:
        assert found.where_served is not None, "the check where served passed a model it cannot load"
        assert re.search(form.refused_where_served, found.where_served), found.where_served
        return
    assert found.where_served is None, found.where_served
    from starlette.testclient import TestClient

    from service.http.open_inference import inference_app, serve
    from service.http.rows import RowRules
    from service.models.loader import load_model_dir

    contract = read_contract(found.model_dir)
    keras = {name: np.asarray(values) for name, values in contract.named_outputs(found.keras).items()}
    loaded = load_model_dir(found.model_dir, form.id.replace("_", "-"), "1")

    # /predict: the JSON body parsed by the service's rows check, then the served predictor.
    rows = RowRules(lambda: loaded.contract, 64).body(
        json.loads(json.dumps(request_body(contract, found.x_test)))
    )
    answered_by, outputs = asyncio.run(predictions(loaded)(rows))
    assert answered_by is loaded
    worst = assert_same(outputs, keras)

    # The Open Inference Protocol's infer, on its own app as the service mounts it.
    app = inference_app(64, platform="tensorflow_keras")
    serve(app, lambda: loaded, predictions(loaded))
    with TestClient(app) as client:
        response = client.post(f"/models/{loaded.name}/versions/1/infer", json=infer_body(contract, rows))
    assert response.status_code == 200, response.text
    inferred = {
        output["name"]: np.asarray(output["data"]).reshape(output["shape"])
        for output in response.json()["outputs"]
    }
    worst = max(worst, assert_same(inferred, keras))
    print(f"{form.id}: served, largest difference {worst:.2g}")
