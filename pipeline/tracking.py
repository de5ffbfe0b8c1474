"""Connecting to the MLflow tracking store: the embedded SQLite one, or any server by URI."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pipeline.errors import TrackingUnreachable
from pipeline.settings import PipelineSettings
from service.settings import sqlite_file

if TYPE_CHECKING:
    from mlflow import MlflowClient


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail in one line if an HTTP tracking server does not answer, instead of minutes of retries."""
    if urlparse(uri).scheme not in ("http", "https"):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            reason = f"HTTP {exc.response.status_code}"
        raise TrackingUnreachable(
            f"MLflow tracking server {uri} is unreachable ({reason}); "
            "start it or point MLFLOW_TRACKING_URI elsewhere"
        ) from None


def connect(settings: PipelineSettings) -> MlflowClient:
    """Point this process (and the kernels it starts) at the store; returns a client for it."""
    uri = settings.tracking_uri
    check_reachable(uri)
    if settings.artifact_location:
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per download otherwise
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def create_if_new(settings: PipelineSettings) -> MlflowClient | None:
    """Create and migrate the store here if it is a SQLite file not made yet (the embedded one or any named by
    MLFLOW_TRACKING_URI), and return its client; None when there is nothing to create (the store exists, or is a
    server). Call it before starting another process that opens the store (the notebook's kernel): two processes
    migrating one new file at once fail, one of them with alembic's "Online migration expected to match one
    row" or "table _alembic_tmp_experiments already exists"."""
    path = sqlite_file(settings.tracking_uri)
    if path is None or (path.exists() and path.stat().st_size > 0):
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return connect(settings)  # MlflowClient opens its store at once: the tables are made and migrated here


def experiment_id(client: MlflowClient, settings: PipelineSettings) -> str:
    """The experiment's id, creating it (with artifacts under the data folder when embedded)."""
    found = client.get_experiment_by_name(settings.experiment_name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(settings.experiment_name, artifact_location=settings.artifact_location)
