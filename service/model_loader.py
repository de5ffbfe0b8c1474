"""Load an MLflow model for serving: a compiled graph for Keras models, MLflow pyfunc for any other flavour.

Independent of BentoML: the HTTP service loads the model BentoML stored (`load_model_dir`), a job worker can
load the registry's alias holder directly (`load_registered`); both get `predict(float array [n, features])
-> array [n, outputs]` and the name and version that answer.

Keras `model.predict()` (which MLflow pyfunc calls) costs about 90 ms a call whatever the batch; a
`tf.function` over the model costs about 1 ms.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.quiet import quiet

if TYPE_CHECKING:
    from pipeline.settings import PipelineSettings

MLFLOW_MODEL_FOLDER = "mlflow_model"  # where bentoml.mlflow.import_model puts the MLflow model in its folder
Predict = Callable[[np.ndarray], np.ndarray]
NUMERIC_COLUMN_TYPES = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32}


class UnsupportedModel(ValueError):
    """A model this service cannot validate input for (no signature, or not one numeric matrix)."""


@dataclass(frozen=True)
class InputSpec:
    """What one request row must be, from the model's MLflow signature."""

    n_features: int
    dtype: np.dtype
    columns: tuple[str, ...] | None = None  # column-based signature: names in order (pyfunc takes a frame)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    flavor: str  # "keras" (graph fast path) or "pyfunc"
    spec: InputSpec
    predict: Predict


def read_input_spec(model_dir: Path) -> InputSpec:
    """The input spec from the MLmodel file's signature: one tensor [-1, n] or n numeric columns."""
    from mlflow.models import Model

    schema = Model.load(str(model_dir)).get_input_schema()
    if schema is None:
        raise UnsupportedModel(f"the model in {model_dir} has no signature: log it with one")
    if schema.is_tensor_spec():
        if len(schema.inputs) != 1:
            raise UnsupportedModel(f"the model takes {len(schema.inputs)} tensors; this service sends one")
        spec = schema.inputs[0]
        shape = tuple(spec.shape)
        if len(shape) != 2 or shape[0] != -1 or shape[1] < 1:
            raise UnsupportedModel(f"the model's input shape {shape} is not [-1, features]")
        return InputSpec(n_features=int(shape[1]), dtype=np.dtype(spec.type))
    types = [column.type.name for column in schema.inputs]
    if not types or any(name not in NUMERIC_COLUMN_TYPES for name in types):
        raise UnsupportedModel(f"the model's input columns {types} are not all numeric")
    dtype = np.result_type(*(NUMERIC_COLUMN_TYPES[name] for name in types))
    names = tuple(str(name) for name in schema.input_names())
    return InputSpec(n_features=len(types), dtype=np.dtype(dtype), columns=names)


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

    spec = read_input_spec(model_dir)
    flavors = Model.load(str(model_dir)).flavors
    keras = flavors.get("keras")
    if keras is not None and keras.get("keras_backend", "tensorflow") == "tensorflow":
        configure_threads(intra_op_threads, inter_op_threads)
        flavor, predict = "keras", _keras_predict(model_dir, spec)
    else:
        flavor, predict = "pyfunc", _pyfunc_predict(model_dir, spec)
    predict(np.zeros((1, spec.n_features), dtype=spec.dtype))  # trace the graph before the first request
    return LoadedModel(name=name, version=version, flavor=flavor, spec=spec, predict=predict)


def load_registered(
    settings: PipelineSettings,
    alias: str | None = None,
    *,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
) -> LoadedModel:
    """The version holding `alias` (default: the champion) of the registered model, cached under data_dir."""
    quiet()
    from mlflow.artifacts import download_artifacts

    from pipeline import registry, tracking
    from pipeline.errors import PipelineError

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = tracking.connect(settings)
    alias = alias or settings.champion_alias
    version = registry.holder(client, settings.model_name, alias)
    if version is None:
        raise PipelineError(f"model {settings.model_name!r} has no @{alias}")
    number = str(version.version)
    target = settings.data_dir / "served" / settings.model_name / number
    if not (target / "MLmodel").exists():
        target.mkdir(parents=True, exist_ok=True)
        download_artifacts(artifact_uri=f"models:/{settings.model_name}/{number}", dst_path=str(target))
    return load_model_dir(
        target,
        settings.model_name,
        number,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )


def _keras_predict(model_dir: Path, spec: InputSpec) -> Predict:
    import mlflow.keras
    import tensorflow as tf

    from pipeline.quiet import quiet_keras

    quiet_keras()
    model = mlflow.keras.load_model(str(model_dir))
    # One graph for every batch size: the batch dimension stays unknown, so no retracing per size. Calling the
    # concrete function skips tf.function's per-call dispatch (input binding, trace-cache lookup): about 0.27 ms
    # of the 0.65 ms a small batch of the digits model costs.
    graph = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, spec.n_features], tf.as_dtype(spec.dtype))],
    ).get_concrete_function()

    def predict(rows: np.ndarray) -> np.ndarray:
        return _first_output(graph(tf.constant(np.asarray(rows, dtype=spec.dtype)))).numpy()

    return predict


def _pyfunc_predict(model_dir: Path, spec: InputSpec) -> Predict:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(model_dir))

    def predict(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=spec.dtype)
        if spec.columns is not None:
            import pandas as pd

            output = model.predict(pd.DataFrame(rows, columns=list(spec.columns)))
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
