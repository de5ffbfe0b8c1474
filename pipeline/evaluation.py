"""A run's held-out rows, and a logged model scored on them the way the service runs it.

Before a version is registered its logged model is loaded by the service's own loader and predicts the rows the
run logged: answers of another shape than the signature says, or other values than the notebook saw, refuse the
run. The gate scores a champion on the candidate's rows the same way.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline import metrics
from pipeline.errors import PipelineError
from pipeline.lineage import EVALUATION_ARTIFACT
from service.models.contract import ContractError, ModelContract, read_contract

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from service.models.loader import LoadedModel

OUTPUT_RTOL, OUTPUT_ATOL = 1e-3, 1e-4  # float32 graph against Keras' own predict_on_batch


@dataclass(frozen=True)
class HeldOut:
    x: np.ndarray
    y: np.ndarray
    outputs: np.ndarray  # what the model answered in the notebook


def held_out(client: MlflowClient, run_id: str) -> HeldOut:
    """The rows `pipeline.notebook.log_model` stored with the run."""
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=EVALUATION_ARTIFACT, tracking_uri=client.tracking_uri
        )
    except Exception:  # MLflow raises several kinds for a missing artifact
        raise PipelineError(
            f"run {run_id} logged no held-out rows ({EVALUATION_ARTIFACT}); the notebook must hand its model "
            "and test rows to pipeline.notebook.log_model"
        ) from None
    with np.load(local) as stored:
        return HeldOut(stored["x"], stored["y"], stored["outputs"])


def location(client: MlflowClient, source: str) -> str:
    """Where a logged model's files are: an MLflow 3 logged model (`models:/m-...`) is resolved through this
    client's store, never through the process's global tracking URI."""
    if source.startswith("models:/m-"):
        return str(client.get_logged_model(source.removeprefix("models:/")).artifact_location)
    return source


def download_model(client: MlflowClient, source: str, folder: Path, path: str = "") -> Path:
    """The MLflow model at `source` (or one file of it, `path`) in `folder`, read through the client's store."""
    import mlflow

    uri = location(client, source).rstrip("/") + (f"/{path}" if path else "")
    folder.mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(folder), tracking_uri=client.tracking_uri
        )
    )


def contract_at(client: MlflowClient, source: str) -> ModelContract:
    """A logged model's contract, read from its MLmodel file alone."""
    with tempfile.TemporaryDirectory() as tmp:
        return read_contract(download_model(client, source, Path(tmp), path="MLmodel").parent)


def load(model_dir: Path, name: str, version: str) -> LoadedModel:
    from service.models.loader import load_model_dir

    try:
        return load_model_dir(model_dir, name, version)
    except ContractError as exc:
        raise PipelineError(f"the logged model cannot be served: {exc}") from None


def check_served_answers(model: LoadedModel, rows: HeldOut) -> None:
    """PipelineError when the served path's answers for the held-out rows break the contract or differ from what
    the notebook's model answered."""
    try:
        outputs = model.contract.check_outputs(model.predict(rows.x), len(rows.x))
    except ContractError as exc:
        raise PipelineError(
            f"the logged model, loaded as the service loads it: {exc}; nothing registered"
        ) from None
    if outputs.shape != rows.outputs.shape:
        raise PipelineError(
            f"the logged model answers {list(outputs.shape)} for the held-out rows where the notebook's model "
            f"answered {list(rows.outputs.shape)}; nothing registered"
        )
    if not np.allclose(outputs, rows.outputs, rtol=OUTPUT_RTOL, atol=OUTPUT_ATOL):
        worst = float(np.max(np.abs(outputs - rows.outputs)))
        raise PipelineError(
            "the logged model, loaded as the service loads it, answers the held-out rows otherwise than the "
            f"notebook's model (values differ by up to {worst:.3g}); nothing registered"
        )


def score_on(model: LoadedModel, rows: HeldOut) -> dict[str, float]:
    """A model's scores on other rows (the gate's champion on the candidate's rows)."""
    return metrics.score(
        model.contract, model.contract.check_outputs(model.predict(rows.x), len(rows.x)), rows.y
    )
