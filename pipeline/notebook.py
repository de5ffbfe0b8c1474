"""What a training notebook calls: four functions, one MLflow run per execution.

    run = notebook.start_run()                                   # the run, with the parameters cell's values
    notebook.log_history(history)                                # optional: per-epoch metrics and their curves
    scores = notebook.log_model(model, task="classification",   # "multilabel", "regression"; a dict by output
                                x_test=x_test, y_test=y_test,    # held-out rows and their targets (dicts by name)
                                class_names=None, feature_names=None)
    notebook.end_run()

`log_model` reads the model's contract off the Keras model itself (its named input and output tensors), checks
that its answers for the held-out rows fit each output's task, logs the metrics and plots, stores the rows (the
gate compares versions on them) and logs the model with that signature and the modules its custom layers live in.
Anything that does not fit is a `ContractError` raised in the notebook's cell, so the pipeline registers nothing;
the pipeline then loads the logged model where nothing of the notebook is (pipeline/served_check.py) before it
registers a version.

Executed by `python -m pipeline train`, the run is tagged with the pipeline's invocation id, by which the pipeline
finds it; opened by hand, the notebook logs a run of its own.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import plots
from pipeline.keras_contract import PerOutput, contract_of, feed, rows_of
from pipeline.lineage import DATA_SHA_TAG, INVOCATION_ENV, INVOCATION_TAG, MODEL_URI_TAG, TASK_TAG
from pipeline.model_code import log_keras_with_code, modules_to_ship
from service.models import metrics, reference
from service.models.contract import STRING, ContractError, ModelContract, Output, Task, rows_in, show_shape
from service.models.quiet import quiet, quiet_keras
from service.models.scoring import EVALUATION_ARTIFACT, HeldOut

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
    task: Task | Mapping[str, Task],
    x_test: Any,
    y_test: Any,
    class_names: PerOutput = None,
    feature_names: Sequence[str] | None = None,
    value_names: PerOutput = None,
    threshold: PerOutput = None,
) -> dict[str, float]:
    """Check, score and log the trained Keras model with its held-out rows; returns the test metrics.

    A model of one input and one output takes arrays and single values; a model of several takes `x_test` as a
    dict of arrays by input name, and `task`, `y_test`, `class_names` (classifiers), `value_names` (regressions)
    and `threshold` (multi-label, default 0.5) as dicts by output name. A classifier's targets are class indices,
    one-hot rows, or the labels as the data has them ("spam", "ham"), mapped to classes through `class_names`.
    The modules beside the notebook that hold the model's custom layers ship with it."""
    import mlflow

    run = _active_run()
    contract = contract_of(model, task, x_test, class_names, feature_names, value_names, threshold)
    rows = rows_of(x_test, [t.name for t in contract.inputs])
    n = rows_in(rows)
    if n < 2:
        raise ContractError("log_model needs at least two held-out rows to score the model on")
    targets = _named_targets(contract, y_test, n)
    code = modules_to_ship(model)  # before anything is logged: a model a service could not load is refused
    outputs = contract.check_outputs(
        model.predict_on_batch(feed(model, contract, rows, isinstance(x_test, Mapping))), n
    )
    scores = metrics.score(contract, outputs, targets)
    mlflow.log_metrics(scores)
    _log_evaluation(contract, HeldOut(rows, targets, outputs))
    # What the version's inputs and answers look like on these rows: live rows are compared with it (monitor).
    summaries = {output.name: reference.summary(output, outputs[output.name]) for output in contract.outputs}
    info = log_keras_with_code(
        model,
        MODEL_ARTIFACT,
        code,
        contract,
        reference.make(contract, rows, summaries),
        signature=contract.signature(),
        metadata=contract.metadata(),
        pip_requirements=pip_requirements(),
    )
    mlflow.MlflowClient().set_tag(run.info.run_id, MODEL_URI_TAG, info.model_uri)
    return scores


def _named_targets(contract: ModelContract, y_test: Any, n_rows: int) -> dict[str, np.ndarray]:
    """The held-out targets by output name, each checked against its output."""
    if isinstance(y_test, Mapping):
        named = {str(name): np.asarray(values) for name, values in y_test.items()}
    elif contract.single_output:
        named = {contract.output.name: np.asarray(y_test)}
    else:
        raise ContractError(f"the model answers {[o.name for o in contract.outputs]}: pass y_test as a dict")
    if sorted(named) != sorted(o.name for o in contract.outputs):
        raise ContractError(
            f"y_test holds targets for {sorted(named)}; the model answers {[o.name for o in contract.outputs]}"
        )
    for output in contract.outputs:
        where = f"y_test {output.name!r}" if not contract.single_output else "y_test"
        if output.task == "classification":
            named[output.name] = _class_indices(output, named[output.name], where)
        _check_targets(output, named[output.name], n_rows, where)
    return named


def _class_indices(output: Output, targets: np.ndarray, where: str) -> np.ndarray:
    """A classifier's targets as class indices: whole numbers and one-hot rows as they are; any other label (a
    string such as "spam", as a notebook's data often has them) by its place in the output's class names."""
    if targets.dtype.kind in "iub" or (
        targets.dtype.kind == "f" and np.isfinite(targets).all() and (targets == np.round(targets)).all()
    ):
        return targets
    labels = [value.decode() if isinstance(value, bytes) else str(value) for value in targets.ravel()]
    if len(labels) != len(targets):
        raise ContractError(f"{where}: one label a row, got rows of shape {list(targets.shape[1:])}")
    k = output.n_classes or 0
    if output.class_names is None:
        raise ContractError(
            f"{where} holds labels such as {labels[0][:40]!r}, not class indices: pass class_names=[...] (the "
            f"label of each of the output's {k} classes, in its order) and they are mapped to the classes, or "
            f"y_test as class indices 0..{k - 1}"
        )
    index = {name: i for i, name in enumerate(output.class_names)}
    unknown = next((label for label in labels if label not in index), None)
    if unknown is not None:
        raise ContractError(
            f"{where} holds label {unknown[:40]!r}, which is not one of class_names {list(output.class_names)[:12]}"
        )
    return np.array([index[label] for label in labels], dtype=np.int64)


def _check_targets(output: Output, targets: np.ndarray, n_rows: int, where: str) -> None:
    if len(targets) != n_rows:
        raise ContractError(f"{n_rows} test rows but {len(targets)} targets in {where}")
    if output.task != "classification" and targets.dtype.kind not in "iufb":
        what = "strings" if targets.dtype.kind in "OUS" else f"{targets.dtype.name} values"
        raise ContractError(
            f"{where} holds {what}; the targets of a {output.task} output are numbers"
            + (" (0 or 1 for each class of a row)" if output.task == "multilabel" else "")
        )
    if output.task == "classification":
        labels = metrics.class_targets(output, targets)
        n_classes = output.n_classes or 0
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ContractError(
                f"{where} has labels {labels.min()}..{labels.max()}; the output has {n_classes} classes "
                f"(labels 0..{n_classes - 1})"
            )
    elif targets.reshape(len(targets), -1).shape[1] != max(1, output.tensor.width):
        raise ContractError(
            f"{where} has targets of shape {list(targets.shape[1:])}; the model answers "
            f"{show_shape(output.tensor.shape)}"
        )


def _log_evaluation(contract: ModelContract, held: HeldOut) -> None:
    """The held-out rows (an artifact for the gate, a dataset for the UI), their hash, each output's plots."""
    import mlflow
    from mlflow.data.numpy_dataset import from_numpy
    from sklearn.metrics import confusion_matrix

    digest = hashlib.sha256()
    for name, array in sorted(held.x.items()) + sorted(held.y.items()):
        digest.update(f"{name}{array.dtype.str}{array.shape}".encode())
        digest.update(
            repr(array.tolist()).encode() if array.dtype == STRING else np.ascontiguousarray(array).tobytes()
        )
    mlflow.set_tags({DATA_SHA_TAG: digest.hexdigest(), TASK_TAG: contract.task})
    numeric = {name: values for name, values in held.x.items() if values.dtype != STRING}
    if numeric:
        features = numeric if len(numeric) > 1 else next(iter(numeric.values()))
        mlflow.log_input(from_numpy(features, name="test rows"), context="evaluation")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        held.save(folder / Path(EVALUATION_ARTIFACT).name)
        mlflow.log_artifact(
            str(folder / Path(EVALUATION_ARTIFACT).name), artifact_path=str(Path(EVALUATION_ARTIFACT).parent)
        )
        figures = folder / "plots"
        figures.mkdir()
        for output in contract.outputs:
            prefix = "" if contract.single_output else f"{output.name}_"
            values, targets = held.outputs[output.name], held.y[output.name]
            if output.task == "classification":
                n_classes = output.n_classes or 0
                names = output.class_names or tuple(str(i) for i in range(n_classes))
                matrix = confusion_matrix(
                    metrics.class_targets(output, targets), output.labels(values), labels=range(n_classes)
                )
                plots.confusion_matrix_png(matrix, names, figures / f"{prefix}confusion_matrix.png")
            elif output.task == "regression":
                plots.predicted_vs_true_png(values, targets, figures / f"{prefix}predicted_vs_true.png")
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
