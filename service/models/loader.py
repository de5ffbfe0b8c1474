"""Load an MLflow model for serving: a compiled graph for Keras models, MLflow pyfunc for any other flavour.

Independent of BentoML: the API and the job worker load the packaged model's folder, and a follower of the
registry's alias each new version's (service.models.source), all through `load_model_dir`; each gets the model's
contract (service.models.contract), `predict(rows [n, *input shape]) -> outputs [n, *output shape]` and the name
and version that answer. Keras `model.predict()`, which MLflow pyfunc calls, has a large fixed cost a call; a
graph over the model does not (DESIGN.md, "Facts that shape the code").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.models.contract import ModelContract, read_contract
from service.models.quiet import quiet, quiet_keras

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    flavor: str  # "keras" (graph fast path) or "pyfunc"
    contract: ModelContract
    predict: Predict


def configure_threads(intra_op: int, inter_op: int) -> None:
    """TensorFlow thread pools of this process; 0 lets TensorFlow choose. Only before TensorFlow runs an op."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:  # already initialised in this process (a second model): keep its pools
        pass


def load_model_dir(
    model_dir: Path, name: str, version: str, *, intra_op_threads: int = 1, inter_op_threads: int = 1
) -> LoadedModel:
    """Load the MLflow model in `model_dir` (the folder holding `MLmodel`) and warm it up."""
    quiet()
    from mlflow.models import Model

    contract = read_contract(model_dir)
    flavors = Model.load(str(model_dir)).flavors
    keras = flavors.get("keras")
    if keras is not None and keras.get("keras_backend", "tensorflow") == "tensorflow":
        configure_threads(intra_op_threads, inter_op_threads)
        flavor, predict = "keras", _keras_predict(model_dir, contract)
    else:
        flavor, predict = "pyfunc", _pyfunc_predict(model_dir, contract)
    # Trace the graph before the first request, and refuse a model whose answers break its own contract.
    contract.check_outputs(predict(np.zeros((1, *contract.input.shape), dtype=contract.input.dtype)), 1)
    return LoadedModel(name=name, version=version, flavor=flavor, contract=contract, predict=predict)


def _keras_predict(model_dir: Path, contract: ModelContract) -> Predict:
    import mlflow.keras
    import tensorflow as tf

    quiet_keras()
    model = mlflow.keras.load_model(str(model_dir))
    # One graph for every batch size: the batch dimension stays unknown, so no retracing per size. Calling the
    # concrete function skips tf.function's per-call dispatch (input binding, trace-cache lookup), a large part
    # of a small batch's cost (docs/benchmarks/serve.md).
    graph = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, *contract.input.shape], tf.as_dtype(contract.input.dtype))],
    ).get_concrete_function()
    dtype = contract.input.dtype

    def predict(rows: np.ndarray) -> np.ndarray:
        return _first_output(graph(tf.constant(np.asarray(rows, dtype=dtype)))).numpy()

    return predict


def _pyfunc_predict(model_dir: Path, contract: ModelContract) -> Predict:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(model_dir))
    columns = list(contract.feature_names or ()) if contract.columns else None

    def predict(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=contract.input.dtype)
        if columns is not None:
            import pandas as pd

            output = model.predict(pd.DataFrame(rows, columns=columns))
        else:
            output = model.predict(rows)
        return np.asarray(output)

    return predict


def _first_output(output: Any) -> Any:
    """A model with several outputs answers with its first one."""
    if isinstance(output, dict):
        return next(iter(output.values()))
    if isinstance(output, (list, tuple)):
        return output[0]
    return output
