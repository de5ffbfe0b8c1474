"""Where a registered version comes from (its run, metrics, notebook and commit), as `GET /model` shows it and
as packaging stores it with the BentoML model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from service.models.metrics import base_metric

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

TAG_PREFIX = "nbship."  # every MLflow tag nbship writes on runs and versions
NOTEBOOK_SHA_TAG = f"{TAG_PREFIX}notebook_sha256"
# Which runtime answers the version, and why (service.models.lean): decided where it is served, before it is registered.
RUNTIME_TAG, RUNTIME_REASON_TAG = f"{TAG_PREFIX}runtime", f"{TAG_PREFIX}runtime_reason"
METRIC_PREFIX = "test_"  # a run's held-out scores: `test_accuracy`, or an output's `cultivar/test_accuracy`


class ModelLineage(BaseModel):
    """Where the served model comes from; stored with the BentoML model at packaging, served by GET /model."""

    name: str = Field(description="Registered MLflow model name.")
    version: str
    alias: str = Field(description="The alias the version held when it was packaged.")
    run_id: str = Field(description="The MLflow run that trained it.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Test metrics of that run.")
    trained_at: str | None = Field(default=None, description="Start of the training run (UTC, ISO 8601).")
    notebook_sha256: str | None = None
    git_commit: str | None = None
    runtime: str | None = Field(
        default=None,
        description="What answers it: onnxruntime (its lean form) or tensorflow (none: tensorflow).",
    )
    runtime_reason: str | None = Field(default=None, description="Why that runtime: the check's verdict.")
    flavor: str | None = Field(
        default=None,
        description="How the service runs it: onnx (lean form), keras (TensorFlow graph) or pyfunc.",
    )
    bento_model: str | None = Field(default=None, description="BentoML model tag.")
    contract: dict[str, Any] | None = Field(
        default=None, description="Task, input and output dtype and shape, class and feature names."
    )
    serving: dict[str, Any] | None = Field(
        default=None,
        description="How the version is chosen (pinned, or following an alias), the last switch, refused versions.",
    )
    evidence: dict[str, Any] | None = Field(
        default=None,
        description="The answering version's live evidence: requests recorded, the latest records' rows, sampled "
        "and labelled rows, records dropped, the most drifted input features (service/evidence/window_view.py).",
    )


def lineage_of_version(client: MlflowClient, version: ModelVersion, alias: str) -> ModelLineage:
    """A registered version's lineage: its run, metrics, notebook and commit."""
    run_id = str(version.run_id)
    run = client.get_run(run_id)
    started = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC)
    tags = run.data.tags
    return ModelLineage(
        name=version.name,
        version=str(version.version),
        alias=alias,
        run_id=run_id,
        metrics={
            key: value
            for key, value in run.data.metrics.items()
            if base_metric(key).startswith(METRIC_PREFIX)
        },
        trained_at=started.isoformat(timespec="seconds"),
        notebook_sha256=tags.get(NOTEBOOK_SHA_TAG),
        git_commit=tags.get("mlflow.source.git.commit"),
        runtime=tags.get(RUNTIME_TAG),
        runtime_reason=tags.get(RUNTIME_REASON_TAG),
    )
