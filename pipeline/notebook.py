"""What a training notebook calls: four functions, one MLflow run per execution.

    run = notebook.start_run()                                   # the run, with the parameters cell's values
    notebook.log_history(history)                                # optional: per-epoch metrics and their curves
    scores = notebook.log_model(model, task="classification",   # or "regression"
                                x_test=x_test, y_test=y_test,    # held-out rows and their targets
                                class_names=None, feature_names=None)
    notebook.end_run()

`log_model` reads the model's contract off the Keras model itself (its input and output tensors), checks that
its answers for the held-out rows fit the task, logs the task's metrics and plots, stores the rows (the gate
compares versions on them) and logs the model with that signature. Anything that does not fit is a
`ContractError` raised in the notebook's cell, so the pipeline registers nothing.

Executed by `python -m pipeline train`, the run is tagged with the pipeline's invocation id, by which the pipeline
finds it; opened by hand, the notebook logs a run of its own.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import plots
from pipeline.lineage import (
    DATA_SHA_TAG,
    INVOCATION_ENV,
    INVOCATION_TAG,
    MODEL_URI_TAG,
    SERVED_CHECK_TAG,
    TASK_TAG,
)
from service.models import metrics
from service.models.contract import ContractError, ModelContract, Task, Tensor, show_shape
from service.models.quiet import quiet, quiet_keras
from service.models.scoring import EVALUATION_ARTIFACT

MODEL_ARTIFACT = "model"


def start_run():
    """Start the notebook's run and log its parameters: each name the parameters cell declares (`name: type =
    value`, which Python records in the namespace's `__annotations__`) with the value it has now, the pipeline's
    (injected by papermill) or, opened by hand, the cell's own."""
    caller = sys._getframe(1).f_globals
    parameters = {
        name: caller[name]
        for name in caller.get("__annotations__", {})
        if isinstance(caller.get(name), (str, int, float, bool))
    }
    quiet()
    quiet_keras()
    import mlflow

    from pipeline.settings import PipelineSettings
    from pipeline.tracking import connect, experiment_id

    # Run by the pipeline, the kernel gets the notebook's names in its environment; opened by hand in Jupyter,
    # JPY_SESSION_NAME is the notebook's path, whose parameters cell (or file name) names its experiment.
    by_hand = os.environ.get("JPY_SESSION_NAME", "")
    settings = PipelineSettings(notebook=Path(by_hand)) if by_hand.endswith(".ipynb") else PipelineSettings()
    invocation = os.environ.get(INVOCATION_ENV)  # set by `python -m pipeline train` for its kernel
    tags = {INVOCATION_TAG: invocation} if invocation else {}
    # Under `mlflow run` (MLproject) that command's run becomes the parent instead of being resumed.
    parent = os.environ.pop("MLFLOW_RUN_ID", None)
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = mlflow.start_run(experiment_id=experiment_id(connect(settings), settings), tags=tags)
    mlflow.log_params(parameters)
    return run


def log_history(history: dict[str, list[float]]) -> None:
    """Per-epoch metrics in one batch (one round trip instead of one per value) and their training curves."""
    import mlflow
    from mlflow.entities import Metric

    run = _active_run()
    now = int(time.time() * 1000)
    values = [
        Metric(key=f"epoch_{key}", value=float(value), timestamp=now, step=step)
        for key, series in history.items()
        for step, value in enumerate(series, start=1)
    ]
    mlflow.MlflowClient().log_batch(run.info.run_id, metrics=values)
    if history:
        with tempfile.TemporaryDirectory() as tmp:
            plots.training_curves(history, Path(tmp) / "training_curves.png")
            mlflow.log_artifacts(tmp, artifact_path="plots")


def log_model(
    model: Any,
    *,
    task: Task,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Check, score and log the trained Keras model with its held-out rows; returns the test metrics."""
    import mlflow

    run = _active_run()
    contract = contract_of(model, task, x_test, class_names, feature_names)
    x_test = np.ascontiguousarray(x_test, dtype=contract.input.dtype)
    y_test = np.asarray(y_test)
    if len(y_test) != len(x_test):
        raise ContractError(f"{len(x_test)} test rows but {len(y_test)} targets")
    if len(x_test) < 2:
        raise ContractError("log_model needs at least two held-out rows to score the model on")
    outputs = contract.check_outputs(model.predict_on_batch(x_test), len(x_test))
    _check_targets(contract, y_test)
    scores = metrics.score(contract, outputs, y_test)
    mlflow.log_metrics(scores)
    _log_evaluation(contract, x_test, y_test, outputs)
    info = mlflow.keras.log_model(
        model,
        name=MODEL_ARTIFACT,
        signature=contract.signature(),
        metadata=contract.metadata(),
        pip_requirements=pip_requirements(),
    )
    _check_as_served(info.model_uri, x_test, y_test, outputs)
    client = mlflow.MlflowClient()
    for key, value in {MODEL_URI_TAG: info.model_uri, SERVED_CHECK_TAG: "passed"}.items():
        client.set_tag(run.info.run_id, key, value)
    return scores


def _check_as_served(model_uri: str, x_test: np.ndarray, y_test: np.ndarray, outputs: np.ndarray) -> None:
    """The logged model, loaded back by the service's own loader, must answer the held-out rows as the trained
    model did (a PipelineError in the cell otherwise: the pipeline registers nothing)."""
    import mlflow

    from pipeline import evaluation
    from service.models.registry import download_model
    from service.models.scoring import HeldOut

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = download_model(mlflow.MlflowClient(), model_uri, Path(tmp))
        loaded = evaluation.load(model_dir, "candidate", "logged")
        evaluation.check_served_answers(loaded, HeldOut(x_test, y_test, outputs))


def contract_of(
    model: Any,
    task: Task,
    x_test: np.ndarray,
    class_names: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
) -> ModelContract:
    """The contract read off the Keras model: its one input and one output tensor, their dtypes and shapes."""
    inputs, outputs = _tensors(model, "inputs"), _tensors(model, "outputs")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ContractError(
            f"the model has {len(inputs)} inputs and {len(outputs)} outputs; nbship serves one input tensor "
            "and one output tensor (concatenate features into one input)"
        )
    input_tensor, output_tensor = _tensor(inputs[0]), _tensor(outputs[0])
    contract = ModelContract(
        task,
        input_tensor,
        output_tensor,
        tuple(str(name) for name in class_names) if class_names is not None else None,
        tuple(str(name) for name in feature_names) if feature_names is not None else None,
    )
    rows = np.asarray(x_test)
    if rows.shape[1:] != input_tensor.shape:
        raise ContractError(
            f"x_test has rows of shape {list(rows.shape[1:])}; the model takes {show_shape(input_tensor.shape)}"
        )
    if rows.dtype.kind not in "iufb":
        raise ContractError(f"x_test holds {rows.dtype.name} values; the model takes numbers")
    return contract


def _tensors(model: Any, which: str) -> list[Any]:
    try:
        tensors = getattr(model, which)
    except (AttributeError, ValueError):  # a Sequential model never built with an input shape
        raise ContractError(
            "the model has no known input shape: start it with keras.Input(shape=...) so its contract "
            "can be read off the model"
        ) from None
    return list(tensors.values()) if isinstance(tensors, dict) else list(tensors)


def _tensor(keras_tensor: Any) -> Tensor:
    shape = tuple(keras_tensor.shape)
    if not shape or shape[0] is not None:
        raise ContractError(f"tensor {keras_tensor.name!r} of shape {shape} has no batch dimension first")
    try:
        dtype = np.dtype(str(keras_tensor.dtype))
    except TypeError:
        dtype = np.dtype(object)  # e.g. string: refused by the contract with a message that says so
    if any(d is None for d in shape[1:]):
        raise ContractError(
            f"tensor {keras_tensor.name!r} of shape {shape} has unknown dimensions besides the batch; "
            "nbship serves fixed shapes"
        )
    return Tensor(tuple(int(d) for d in shape[1:]), dtype, getattr(keras_tensor, "name", None))


def _check_targets(contract: ModelContract, y_test: np.ndarray) -> None:
    if contract.task == "classification":
        labels = metrics.class_targets(contract, y_test)
        n_classes = contract.n_classes or 0
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ContractError(
                f"y_test has labels {labels.min()}..{labels.max()}; the model has {n_classes} classes "
                f"(labels 0..{n_classes - 1})"
            )
    elif y_test.reshape(len(y_test), -1).shape[1] != max(1, contract.output.width):
        raise ContractError(
            f"y_test has targets of shape {list(y_test.shape[1:])}; the model answers "
            f"{show_shape(contract.output.shape)}"
        )


def _log_evaluation(
    contract: ModelContract, x_test: np.ndarray, y_test: np.ndarray, outputs: np.ndarray
) -> None:
    """The held-out rows (an artifact for the gate, a dataset for the UI), their hash, the task's plots."""
    import mlflow
    from mlflow.data.numpy_dataset import from_numpy
    from sklearn.metrics import confusion_matrix

    digest = hashlib.sha256()
    for array in (x_test, y_test):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    mlflow.set_tags({DATA_SHA_TAG: digest.hexdigest(), TASK_TAG: contract.task})
    mlflow.log_input(from_numpy(x_test, targets=y_test, name="test rows"), context="evaluation")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = folder / Path(EVALUATION_ARTIFACT).name
        np.savez_compressed(rows, x=x_test, y=y_test, outputs=outputs)
        mlflow.log_artifact(str(rows), artifact_path=str(Path(EVALUATION_ARTIFACT).parent))
        figures = folder / "plots"
        figures.mkdir()
        if contract.task == "classification":
            n_classes = contract.n_classes or 0
            names = contract.class_names or tuple(str(i) for i in range(n_classes))
            matrix = confusion_matrix(
                metrics.class_targets(contract, y_test), contract.labels(outputs), labels=range(n_classes)
            )
            plots.confusion_matrix_png(matrix, names, figures / "confusion_matrix.png")
        else:
            plots.predicted_vs_true_png(outputs, y_test, figures / "predicted_vs_true.png")
        mlflow.log_artifacts(str(figures), artifact_path="plots")


def pip_requirements() -> list[str]:
    """What the model needs to load, pinned to what trained it. Explicit: inferring costs ~9 s a run."""
    tensorflow = "tensorflow-cpu" if _installed("tensorflow-cpu") else "tensorflow"
    return [f"{name}=={metadata.version(name)}" for name in (tensorflow, "keras", "mlflow", "numpy")]


def end_run() -> None:
    import mlflow

    mlflow.end_run()


def _active_run():
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("call pipeline.notebook.start_run first")
    return run


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True
