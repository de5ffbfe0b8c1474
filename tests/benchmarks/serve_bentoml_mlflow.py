"""The peer a BentoML user writes from BentoML's own MLflow example (the bentoml/BentoMLflow repository's
`service_batching.py`, the "MLflow" page of BentoML's docs): the registered model imported with
`bentoml.mlflow.import_model`, loaded with `bentoml.mlflow.load_model` in `__init__`, and a batchable API that
hands each batch to the MLflow pyfunc model's `predict`. Served by the serve benchmark only:

    PEER_MODEL=<bento model tag> bentoml serve serve_bentoml_mlflow:MLflowExample

`import_registered` is the import step the example runs once beforehand (here, for the benchmark's own store).
As in the example, no tuning: the defaults of BentoML and TensorFlow, the parameter named `instances` so the
same request bodies as /predict's apply (the example calls it `input_data`), the feature count of the
benchmark's models (64).
"""

from __future__ import annotations

import os
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import DType, Shape

WORKERS = int(os.environ.get("PEER_WORKERS", "2"))


def import_registered(name: str, model_uri: str) -> str:
    """`bentoml.mlflow.import_model` of a registered version (needs MLFLOW_TRACKING_URI); its tag."""
    return str(bentoml.mlflow.import_model(name, model_uri).tag)


@bentoml.service(workers=WORKERS, traffic={"timeout": 30})
class MLflowExample:
    bento_model = bentoml.models.BentoModel(os.environ.get("PEER_MODEL", "mlflow-example:latest"))

    def __init__(self) -> None:
        self.model = bentoml.mlflow.load_model(self.bento_model)

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, instances: Annotated[np.ndarray, Shape((-1, 64)), DType("float32")]) -> np.ndarray:
        return np.asarray(self.model.predict(instances))
