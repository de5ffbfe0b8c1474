"""The service in process: its class called directly, and its ASGI app through a test client (no server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.conftest import ChampionStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]


@pytest.fixture(scope="module")
def service_class(packaged_champion: str) -> Iterator[Any]:
    """The service's class, with MODEL_TAG set (what `./noxw -s serve` sets: the packaged version to serve) for
    this module's tests only: later tests copy os.environ into the servers they start."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_TAG", packaged_champion)
        from service.service import PredictionService  # its settings are read at import

        yield PredictionService


@pytest.fixture(scope="module")
def service(service_class: Any) -> Any:
    return service_class()


@pytest.fixture(scope="module")
def client(service_class: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    with TestClient(service_class.to_asgi()) as client:
        yield client


def test_predict_in_process_equals_the_models_own_predictions(
    service: Any, champion_store: ChampionStore
) -> None:
    answer = asyncio.run(service.predict({"pixels": champion_store.rows}))
    np.testing.assert_allclose(answer.probabilities, champion_store.probabilities, rtol=1e-5, atol=1e-6)
    assert answer.predictions == champion_store.probabilities.argmax(axis=1).tolist()
    assert (answer.model.name, answer.model.version) == ("digits-classifier", champion_store.version)
    assert service.models.current.flavor == "onnx"


def test_lineage_names_the_registered_version_and_its_run(
    service: Any, champion_store: ChampionStore
) -> None:
    lineage = service.model_lineage()
    assert lineage.version == champion_store.version
    assert lineage.run_id == champion_store.run_id
    assert lineage.alias == "champion"
    assert set(lineage.metrics) == {"test_accuracy", "test_macro_f1", "test_log_loss"}
    assert lineage.contract == {
        "inputs": [{"name": "pixels", "dtype": "float32", "shape": [-1, 64]}],
        "outputs": [
            {
                "name": "probabilities",
                "dtype": "float32",
                "shape": [-1, 10],
                "task": "classification",
                "class_names": [str(digit) for digit in range(10)],
            }
        ],
    }
    assert lineage.trained_at and lineage.notebook_sha256


def test_http_predict_in_process(client: Any, champion_store: ChampionStore) -> None:
    response = client.post("/predict", json={"instances": champion_store.rows.tolist()})
    assert response.status_code == 200
    body = response.json()
    np.testing.assert_allclose(body["probabilities"], champion_store.probabilities, rtol=1e-5, atol=1e-6)
    assert body["model"] == {"name": "digits-classifier", "version": champion_store.version}
    assert body["classes"] == [str(label) for label in champion_store.probabilities.argmax(axis=1)]


def test_http_bad_input_in_process_is_a_422_naming_the_field(client: Any) -> None:
    row: list[Any] = [0.0] * 64
    row[5] = "five"
    response = client.post("/predict", json={"instances": [[0.0] * 64, row]})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "row 1, field 5: expected a number, got a string ('five')",
        "errors": [
            {
                "loc": ["body"],
                "msg": "row 1, field 5: expected a number, got a string ('five')",
                "type": "invalid_request",
            }
        ],
    }


def test_get_model_in_process(client: Any, champion_store: ChampionStore) -> None:
    response = client.get("/model")
    assert response.status_code == 200
    assert response.json()["run_id"] == champion_store.run_id


def test_the_worker_loads_the_packaged_model_as_the_service_does(
    packaged_champion: str, champion_store: ChampionStore
) -> None:
    """What a pinned job worker answers with: the packaged model, through the same loader, without the registry."""
    from service.serving.packaged import load_packaged

    model = load_packaged(packaged_champion)
    assert (model.name, model.version, model.flavor) == ("digits-classifier", champion_store.version, "onnx")
    assert model.contract.input.shape == (64,) and model.contract.input.dtype == np.float32
    answered = model.predict({"pixels": champion_store.rows})["probabilities"]
    np.testing.assert_allclose(answered, champion_store.probabilities, rtol=1e-5)


def test_the_served_app_times_requests_out_with_the_timer_that_is_cancelled(service_class: Any) -> None:
    from service.serving.request_timeout import RequestTimeout

    layers = [middleware.cls for middleware in service_class.to_asgi().user_middleware]
    assert RequestTimeout in layers
    assert "TimeoutMiddleware" not in [layer.__name__ for layer in layers]  # BentoML's own


def test_concurrent_predictions_are_answered_in_batches_by_one_version(
    service: Any, champion_store: ChampionStore
) -> None:
    """/predict's rows go through the service's own dispatcher: requests that arrive together share a model call."""
    rows = champion_store.rows

    async def many() -> list[Any]:
        return await asyncio.gather(*(service.predictions({"pixels": rows[i : i + 1]}) for i in range(8)))

    answered = asyncio.run(many())
    assert {model.version for model, _ in answered} == {champion_store.version}
    probabilities = np.concatenate([outputs["probabilities"] for _, outputs in answered])
    np.testing.assert_allclose(probabilities, champion_store.probabilities[:8], rtol=1e-5, atol=1e-6)
