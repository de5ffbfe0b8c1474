"""What the training notebook calls: one MLflow run per execution, and everything logged into it.

The notebook starts the run itself, on the store the settings name. Executed by `python -m pipeline train`, the
run is tagged with the pipeline's invocation id, by which the pipeline finds it to register its model; the
pipeline starts the kernel at once and connects to MLflow while the kernel imports TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import evaluate, plots
from pipeline.data import N_CLASSES, N_FEATURES, Split
from pipeline.lineage import DATA_SHA_TAG, INVOCATION_TAG, MODEL_URI_TAG
from pipeline.quiet import quiet, quiet_keras

MODEL_ARTIFACT = "model"


def start_run(pipeline_invocation: str, parameters: dict[str, Any], split: Split):
    """Start the run, logging the parameters and the data's hash."""
    quiet()
    quiet_keras()
    import mlflow

    from pipeline.settings import PipelineSettings
    from pipeline.tracking import connect, experiment_id

    settings = PipelineSettings()
    tags = {DATA_SHA_TAG: split.sha256}
    if pipeline_invocation:
        tags[INVOCATION_TAG] = pipeline_invocation
    # Under `mlflow run` (MLproject) that command's run becomes the parent instead of being resumed.
    parent = os.environ.pop("MLFLOW_RUN_ID", None)
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = mlflow.start_run(experiment_id=experiment_id(connect(settings), settings), tags=tags)
    mlflow.log_params(parameters)
    return run


def log_history(history: dict[str, list[float]]) -> None:
    """Per-epoch metrics, in one batch (one round trip to the store instead of one per value)."""
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(key=f"epoch_{key}", value=float(value), timestamp=now, step=step)
        for key, values in history.items()
        for step, value in enumerate(values, start=1)
    ]
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("call pipeline.notebook.start_run first")
    mlflow.MlflowClient().log_batch(run.info.run_id, metrics=metrics)


def log_evaluation(
    probabilities: np.ndarray, split: Split, history: dict[str, list[float]]
) -> dict[str, float]:
    """Test metrics plus the training-curve and confusion-matrix figures."""
    import mlflow

    scores = evaluate.score(probabilities, split.y_test)
    mlflow.log_metrics(scores)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.training_curves(history, folder / "training_curves.png")
        matrix = evaluate.confusion(probabilities, split.y_test)
        plots.confusion_matrix_png(matrix, folder / "confusion_matrix.png")
        mlflow.log_artifacts(tmp, artifact_path="plots")
    return scores


def signature():
    from mlflow.models.signature import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_FEATURES), name="pixels")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_CLASSES), name="probabilities")]),
    )


def pip_requirements() -> list[str]:
    """What the model needs to load, pinned to what trained it. Explicit: inferring costs ~9 s a run."""
    tensorflow = "tensorflow-cpu" if _installed("tensorflow-cpu") else "tensorflow"
    return [f"{name}=={metadata.version(name)}" for name in (tensorflow, "keras", "mlflow", "numpy")]


def log_model(model: Any) -> str:
    """Log the Keras model with its signature; the pipeline registers it from the URI tagged here."""
    import mlflow

    info = mlflow.keras.log_model(
        model, name=MODEL_ARTIFACT, signature=signature(), pip_requirements=pip_requirements()
    )
    mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    return info.model_uri


def end_run() -> None:
    import mlflow

    mlflow.end_run()


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True
