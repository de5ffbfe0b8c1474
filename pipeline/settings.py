"""Settings of the training pipeline, read from the environment and `.env`.

Built once at the entry point (`python -m pipeline ...`) and passed down; nothing reads them at import time.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class PipelineSettings(BaseSettings):
    # The project's .env wherever the command runs from; a .env in the current folder overrides it.
    model_config = SettingsConfigDict(env_file=(PROJECT_ROOT / ".env", ".env"), extra="ignore")

    data_dir: Path = Field(
        default=PROJECT_ROOT / ".nbship",
        description="Project data folder: the embedded MLflow store, its artifacts and executed notebooks.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="Any MLflow tracking server or store; default: SQLite under data_dir."
    )
    experiment_name: str = "digits"
    model_name: str = Field(default="digits-classifier", description="Registered model name.")
    champion_alias: str = "champion"
    gate_metric: str | None = Field(
        default=None,
        description="Metric the gate compares; default by task: test_accuracy (classifiers), test_rmse (regressors).",
    )
    gate_margin: float = Field(default=0.0, ge=0.0, description="Least improvement, in the metric's units.")
    notebook: Path = PROJECT_ROOT / "notebooks" / "train.ipynb"
    kernel_name: str = "python3"
    ui_host: str = "127.0.0.1"
    ui_port: int = Field(default=5000, ge=1, le=65535)

    @field_validator("data_dir", "notebook")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @field_validator("gate_metric")
    @classmethod
    def _known_metric(cls, metric: str | None) -> str | None:
        from pipeline.metrics import HIGHER_IS_BETTER

        if metric and metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown metric {metric!r}; one of {', '.join(HIGHER_IS_BETTER)}")
        return metric or None

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _unset_when_empty(cls, uri: str | None) -> str | None:
        return uri or None

    @property
    def store_file(self) -> Path:
        """The embedded store's SQLite file (used unless MLFLOW_TRACKING_URI names another store)."""
        return self.data_dir / "mlflow.db"

    @property
    def embedded_uri(self) -> str:
        return f"sqlite:///{self.store_file}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or self.embedded_uri

    @property
    def artifact_root(self) -> Path:
        return self.data_dir / "mlartifacts"

    @property
    def runs_dir(self) -> Path:
        """Where executed notebooks and their HTML reports are written before they are logged."""
        return self.data_dir / "runs"

    @property
    def is_embedded_store(self) -> bool:
        """The SQLite file under data_dir, whether by default or named (`python -m pipeline store` prints it)."""
        return self.tracking_uri == self.embedded_uri

    @property
    def artifact_location(self) -> str | None:
        """Where new experiments keep artifacts: under data_dir, unless a tracking server decides."""
        if urlparse(self.tracking_uri).scheme in ("http", "https", "databricks"):
            return None
        return self.artifact_root.as_uri()

    def kernel_env(self) -> dict[str, str]:
        """What a notebook kernel started by the pipeline needs to build the same settings."""
        env = {"DATA_DIR": str(self.data_dir), "EXPERIMENT_NAME": self.experiment_name}
        if self.mlflow_tracking_uri:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_tracking_uri
        return env
