"""A logged model checked the way the service runs it, before its version is registered.

The logged model is loaded by the service's own loader and predicts the rows the run logged: answers of another
shape than the signature says, or other values than the notebook saw, refuse the run. Reading a version's files,
held-out rows and scores is the service's (service.models.registry and service.models.scoring): a follower in the
API checks a version the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import PipelineError
from service.models.contract import ContractError
from service.models.scoring import HeldOut, NoHeldOutRows
from service.models.scoring import held_out as _held_out

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from service.models.loader import LoadedModel

OUTPUT_RTOL, OUTPUT_ATOL = 1e-3, 1e-4  # float32 graph against Keras' own predict_on_batch


def held_out(client: MlflowClient, run_id: str) -> HeldOut:
    """The run's held-out rows; a PipelineError when it logged none."""
    try:
        return _held_out(client, run_id)
    except NoHeldOutRows as exc:
        raise PipelineError(str(exc)) from None


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
