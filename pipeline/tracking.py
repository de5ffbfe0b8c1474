"""Connecting to the MLflow tracking store: the embedded SQLite one, or any server by URI."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pipeline.errors import TrackingUnreachable
from pipeline.settings import PipelineSettings

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


def experiment_id(client: MlflowClient, settings: PipelineSettings) -> str:
    """The experiment's id, creating it (with artifacts under the data folder when embedded)."""
    found = client.get_experiment_by_name(settings.experiment_name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(settings.experiment_name, artifact_location=settings.artifact_location)
