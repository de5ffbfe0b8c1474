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
from service.models.lean import ONNX_RUNTIME, TENSORFLOW
from service.models.lineage import RUNTIME_REASON_TAG, RUNTIME_TAG

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
    run_id: str = ""
    where_served: str | None = None  # why the check where served refused it; None when it passed
    runtime: tuple[str, str] = ("", "")  # which runtime the check where served chose for it, and why


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
                logged[form.id] = Logged(notebook.x_test, uri, refusal, run_id=run.info.run_id)
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
            verdicts = where_served.verdicts(list(served.values()))
        for form_id, verdict in zip(served, verdicts, strict=True):
            logged[form_id] = replace(
                logged[form_id], where_served=verdict.problem, runtime=(verdict.runtime, verdict.reason)
            )
            # As the pipeline tags a run it registers: where a follower reads which runtime answers it.
            client.set_tag(logged[form_id].run_id, RUNTIME_TAG, verdict.runtime)
            client.set_tag(logged[form_id].run_id, RUNTIME_REASON_TAG, verdict.reason)
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
    runtime, reason = found.runtime
    assert runtime == (TENSORFLOW if form.keeps_tensorflow else ONNX_RUNTIME), reason
    if form.keeps_tensorflow:
        assert re.search(form.keeps_tensorflow, reason), reason
    from starlette.testclient import TestClient

    from service.http.open_inference import inference_app, serve
    from service.http.rows import RowRules
    from service.models.loader import load_model_dir

    contract = read_contract(found.model_dir)
    keras = {name: np.asarray(values) for name, values in contract.named_outputs(found.keras).items()}
    loaded = load_model_dir(found.model_dir, form.id.replace("_", "-"), "1", runtime=runtime)
    assert loaded.runtime == runtime

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
    print(f"{form.id}: served by {runtime}, largest difference {worst:.2g} ({reason})")


LEAN_PROCESS = """
import json, sys
sys.modules["tensorflow"] = None  # as in a lean image: `import tensorflow` fails, and nothing here tries it
sys.modules["pandas"] = None  # nor pandas (mlflow.pyfunc and mlflow.keras import it; the lean image has none)
from service.models.loader import load_model_dir
from service.models.source import Follower, ModelSource
from service.settings import SourceSettings

lean, settings = json.loads(sys.argv[1]), SourceSettings(**json.loads(sys.argv[2]))
answers = {}
for form_id, (model_dir, rows) in lean.items():
    model = load_model_dir(__import__("pathlib").Path(model_dir), form_id, "0", runtime="onnxruntime")
    answers[form_id] = {name: values.tolist() for name, values in model.predict(
        {name: __import__("numpy").asarray(values) for name, values in rows.items()}).items()}
source = ModelSource(model)  # the last lean form served, following @champion: a TensorFlow-only version
Follower(settings, "champion")(source)
print(json.dumps({
    "answers": answers,
    "refused": [refusal.reason for refusal in source.status.refused],
    "current": source.current.version,
    "imported": sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx")
                        and sys.modules[name] is not None),
}))
"""


def test_a_lean_process_serves_every_lean_form_without_tensorflow_and_refuses_a_version_that_needs_it(
    zoo: dict[str, Logged], tmp_path: Path
) -> None:
    """One fresh process with no TensorFlow (as a lean image): it loads every form the check made lean and
    answers as the notebook's model did, imports neither TensorFlow nor Keras, follows the registry without
    pandas (which the lean image does not install), and its follower refuses a version that TensorFlow must
    serve, saying why."""
    import subprocess

    import mlflow

    from pipeline import registry

    lean = {form.id: zoo[form.id] for form in FORMS if zoo[form.id].runtime[0] == ONNX_RUNTIME}
    assert len(lean) >= 14, sorted(lean)
    needs_tensorflow = zoo["text_vectorization"]
    store = str(mlflow.get_tracking_uri())
    client = mlflow.MlflowClient(store)
    version = registry.register(
        client, "zoo", str(needs_tensorflow.model_uri), needs_tensorflow.run_id, {}, "zoo"
    )
    client.set_registered_model_alias("zoo", "champion", version.version)
    rows = {
        form_id: {name: np.asarray(values).tolist() for name, values in _named_rows(found).items()}
        for form_id, found in lean.items()
    }
    settings = {
        "mlflow_tracking_uri": store,
        "model_name": "zoo",
        "data_dir": str(tmp_path),
        "follow_alias": "champion",
    }
    done = subprocess.run(
        [sys.executable, "-c", LEAN_PROCESS, json.dumps({k: [str(v.model_dir), rows[k]] for k, v in lean.items()}),
         json.dumps(settings)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] == []
    for form_id, found in lean.items():
        contract = read_contract(found.model_dir)
        keras = {name: np.asarray(v) for name, v in contract.named_outputs(found.keras).items()}
        assert_same({name: np.asarray(v) for name, v in report["answers"][form_id].items()}, keras)
    assert report["current"] == "0"  # still the lean form it served
    (refusal,) = report["refused"]
    assert re.search(
        r"version \d+ is served by TensorFlow \(string input 'text'.*\), which this process does not "
        r"have: serve it from an image built for it",
        refusal,
    ), refusal


def _named_rows(found: Logged) -> dict[str, Any]:
    contract = read_contract(found.model_dir)
    if isinstance(found.x_test, dict):
        return found.x_test
    return {contract.input.name: found.x_test}
