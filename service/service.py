"""The prediction service: `POST /predict` with adaptive batching, `GET /model`, and BentoML's own routes
(`/livez`, `/readyz`, `/metrics`, the OpenAPI page at `/` and `/docs.json`).

Serve the packaged champion with `bentoml serve service.service:PredictionService` (or `nox -s serve`).
Defining the service reads `ServiceSettings` (the batching bounds are part of the API's definition) and
nothing else: each worker loads the model once, in `__init__`.
"""

from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from fastapi import FastAPI
from pydantic import BeforeValidator, Field

from service import batching
from service.logs import drop_client_errors
from service.model_loader import MLFLOW_MODEL_FOLDER, InputSpec, LoadedModel, load_model_dir, read_input_spec
from service.schemas import LINEAGE_KEY, InstanceRules, ModelLineage, PredictResponse, ServedModel
from service.settings import ServiceSettings

settings = ServiceSettings()
batching.register()
champion = bentoml.models.BentoModel(settings.bento_model_tag)


def _input_spec() -> InputSpec:
    return read_input_spec(_model_dir(champion.stored))


def _model_dir(stored: Any) -> Path:
    if stored is None:
        raise RuntimeError(
            f"BentoML model {settings.bento_model_tag} is not in the model store: run `python -m pipeline package`"
        )
    return Path(stored.path_of(MLFLOW_MODEL_FOLDER))


Instances = Annotated[
    np.ndarray,
    BeforeValidator(InstanceRules(_input_spec, settings.max_rows)),
    Field(description=f"1 to {settings.max_rows} rows of the model's input features (finite numbers)."),
]

routes = FastAPI(title="model lineage", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(
    name="nbship",
    workers=settings.workers,
    traffic={"timeout": settings.timeout_s},
    http={"host": settings.host, "port": settings.port},
    logging={"access": {"enabled": settings.access_log}},
)
@bentoml.asgi_app(routes, path="/")
class PredictionService:
    bento_model = champion

    def __init__(self) -> None:
        drop_client_errors()
        stored = self.bento_model  # resolved: the stored model
        lineage = ModelLineage.model_validate(stored.info.metadata[LINEAGE_KEY])
        self.model: LoadedModel = load_model_dir(
            _model_dir(stored),
            lineage.name,
            lineage.version,
            intra_op_threads=settings.tf_intra_op_threads,
            inter_op_threads=settings.tf_inter_op_threads,
        )
        self.served = ServedModel(name=lineage.name, version=lineage.version)
        self.lineage = lineage.model_copy(
            update={"flavor": self.model.flavor, "bento_model": str(stored.tag)}
        )

    @bentoml.api(
        batchable=settings.batching,
        max_batch_size=settings.max_batch_size,
        max_latency_ms=settings.max_latency_ms,
    )
    def predict(self, instances: Instances) -> PredictResponse:
        """Class and class probabilities of each row, and the model version that answered."""
        return respond(self.served, self.model.predict(instances))

    if settings.noop_endpoint:

        @bentoml.api
        async def noop(self, instances: list[Any]) -> dict[str, int]:
            """Benchmarks only (NOOP_ENDPOINT=1): the HTTP stack's ceiling, parsing the same body."""
            return {"rows": len(instances)}

    @routes.get("/model", response_model=ModelLineage)
    def model_lineage(self) -> ModelLineage:
        """Lineage of the served model: registered name, version, alias, run, metrics, training time."""
        return self.lineage


def respond(served: ServedModel, output: np.ndarray) -> PredictResponse:
    output = np.asarray(output)
    if output.ndim == 1:  # a model answering with labels (pyfunc of a plain classifier): no probabilities
        return PredictResponse.model_construct(
            model=served, predictions=output.astype(int).tolist(), probabilities=[[] for _ in output]
        )
    return PredictResponse.model_construct(
        model=served, predictions=output.argmax(axis=1).tolist(), probabilities=output.tolist()
    )
