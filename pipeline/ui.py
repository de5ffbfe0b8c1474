"""`python -m pipeline ui`: the MLflow UI on the configured store, bound to 127.0.0.1 by default."""

from __future__ import annotations

import sys

from pipeline.settings import PipelineSettings


def ui_command(settings: PipelineSettings) -> list[str]:
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", settings.tracking_uri,
        "--default-artifact-root", settings.artifact_root.as_uri(),
        "--host", settings.ui_host,
        "--port", str(settings.ui_port),
        "--workers", "1",
    ]  # fmt: skip
