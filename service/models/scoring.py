"""A version scored on held-out rows: the rows its run logged, and the scores the served path gives on them.

The pipeline's gate scores a champion on a candidate's rows this way, and a follower checks each new version
(its served path must score on its own rows what its run logged) before it answers a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from service.models import metrics

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from service.models.contract import ModelContract

EVALUATION_ARTIFACT = (
    "evaluation/rows.npz"  # the held-out rows, targets and the notebook's outputs (x, y, outputs)
)


class NoHeldOutRows(LookupError):
    """The run logged no held-out rows."""


class Scored(Protocol):
    @property
    def contract(self) -> ModelContract: ...

    def predict(self, rows: np.ndarray, /) -> np.ndarray: ...


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
        raise NoHeldOutRows(
            f"run {run_id} logged no held-out rows ({EVALUATION_ARTIFACT}); the notebook must hand its model "
            "and test rows to pipeline.notebook.log_model"
        ) from None
    with np.load(local) as stored:
        return HeldOut(stored["x"], stored["y"], stored["outputs"])


def score_on(model: Scored, rows: HeldOut) -> dict[str, float]:
    """A model's scores on rows (its own, or another version's: the gate's champion on the candidate's rows)."""
    return metrics.score(
        model.contract, model.contract.check_outputs(model.predict(rows.x), len(rows.x)), rows.y
    )
