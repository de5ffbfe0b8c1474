"""A version scored on held-out rows: the rows its run logged, and the scores the served path gives on them.

The pipeline's gate scores a champion on a candidate's rows this way, and a follower checks each new version
(its served path must score on its own rows what its run logged) before it answers a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from service.models import metrics
from service.models.contract import STRING, ModelContract, Outputs, Rows

if TYPE_CHECKING:
    from mlflow import MlflowClient

EVALUATION_ARTIFACT = (
    "evaluation/rows.npz"  # the held-out rows, targets and the notebook's outputs (x, y, outputs)
)


class NoHeldOutRows(LookupError):
    """The run logged no held-out rows."""


class Scored(Protocol):
    @property
    def contract(self) -> ModelContract: ...

    def predict(self, rows: Rows, /) -> Outputs: ...


@dataclass(frozen=True)
class HeldOut:
    """A run's held-out rows (by input name), their targets and what the notebook's model answered for them (by
    output name). Rows logged before inputs were named are under "" (the model's only input or output)."""

    x: Rows
    y: dict[str, np.ndarray]
    outputs: Outputs

    def named(self, contract: ModelContract) -> HeldOut:
        """The same, named as `contract` names its tensors: the one input's rows and the one output's targets are
        its own whatever they were called ("" when logged before inputs were named; another version's name)."""
        x = _named(self.x, contract.input.name) if contract.single_input else self.x
        if not contract.single_output:
            return HeldOut(x, self.y, self.outputs)
        return HeldOut(x, _named(self.y, contract.output.name), _named(self.outputs, contract.output.name))

    def save(self, path: Any) -> None:
        """In one .npz file, without pickles: strings as unicode arrays."""
        arrays: dict[str, Any] = {
            f"{part}/{name}": values.astype(str) if values.dtype == STRING else values
            for part, named in (("x", self.x), ("y", self.y), ("outputs", self.outputs))
            for name, values in named.items()
        }
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Any) -> HeldOut:
        parts: dict[str, dict[str, np.ndarray]] = {"x": {}, "y": {}, "outputs": {}}
        with np.load(path) as stored:
            for key in stored.files:
                part, _, name = key.partition("/")
                values = stored[key]
                parts[part][name] = values.astype(object) if values.dtype.kind == "U" else values
        return cls(parts["x"], parts["y"], parts["outputs"])


def _named(arrays: dict[str, np.ndarray], only: str) -> dict[str, np.ndarray]:
    return {only: next(iter(arrays.values()))} if len(arrays) == 1 else arrays


def held_out(client: MlflowClient, run_id: str, folder: Any = None) -> HeldOut:
    """The rows `pipeline.notebook.log_model` stored with the run (downloaded into `folder`, if given)."""
    return HeldOut.load(held_out_file(client, run_id, folder))


def held_out_file(client: MlflowClient, run_id: str, folder: Any = None) -> str:
    import mlflow

    try:
        return str(
            mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=EVALUATION_ARTIFACT,
                dst_path=None if folder is None else str(folder),
                tracking_uri=client.tracking_uri,
            )
        )
    except Exception:  # MLflow raises several kinds for a missing artifact
        raise NoHeldOutRows(
            f"run {run_id} logged no held-out rows ({EVALUATION_ARTIFACT}); the notebook must hand its model "
            "and test rows to pipeline.notebook.log_model"
        ) from None


def score_on(model: Scored, rows: HeldOut) -> dict[str, float]:
    """A model's scores on rows (its own, or another version's: the gate's champion on the candidate's rows)."""
    contract = model.contract
    rows = rows.named(contract)
    n = len(next(iter(rows.x.values())))
    return metrics.score(contract, contract.check_outputs(model.predict(rows.x), n), rows.y)
