"""Reading the MLflow registry: which version an alias names, and a version's files and contract.

Every call goes through the given client's store, never through the process's global tracking URI, so a
follower in the API or the worker and the pipeline read the same way. Writing (registering, moving aliases)
is the pipeline's (pipeline/registry.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from service.models.contract import ModelContract, read_contract

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


def connect(tracking_uri: str) -> MlflowClient:
    """A client of the store at `tracking_uri`; nothing global changes."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


def holder(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version holding `alias`, or None when no version does (or the model is not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def location(client: MlflowClient, source: str) -> str:
    """Where a logged model's files are: an MLflow 3 logged model (`models:/m-...`) is resolved through this
    client's store."""
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


def publish_model(client: MlflowClient, source: str, folder: Path) -> Path:
    """The MLflow model at `source` in `folder`, where other processes of the host read it too: downloaded into
    a folder of this process's own, then moved into place by one rename, so that no process ever reads a file
    another is still writing (the API's workers and the job worker each fetch a new version at once). When
    another process got there first, its copy (complete, as every copy there is) is used and this one dropped."""
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        inside = download_model(client, source, staging).relative_to(staging)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # already there: another process's complete copy
            staging.rename(folder)
        return folder / inside
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def contract_at(client: MlflowClient, source: str) -> ModelContract:
    """A logged model's contract, read from its MLmodel file alone."""
    with tempfile.TemporaryDirectory() as tmp:
        return read_contract(download_model(client, source, Path(tmp), path="MLmodel").parent)
