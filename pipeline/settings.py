"""Settings of the training pipeline (`python -m pipeline ...`), read from the environment and `.env`.

Built once at the entry point and passed down; nothing reads them at import time. The fields every deployable
shares (data folder, tracking store, model name, gate metric) are declared once, in `service.settings.Settings`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from pipeline.names import NAME_PARAMETERS, declared_name
from service.settings import PROJECT_ROOT, EvidenceSettings, UiSettings

__all__ = ["PROJECT_ROOT", "MonitorSettings", "PipelineSettings"]


class PipelineSettings(UiSettings):
    experiment_name: str = Field(
        default="",
        description="MLflow experiment of the notebook's runs; default: the notebook's `experiment_name` "
        "parameter, else the notebook file's name.",
    )
    champion_alias: str = Field(
        default="champion", description="The registry alias that names the version to serve."
    )
    gate_margin: float = Field(
        default=0.0, ge=0.0, description="Least improvement over @champion, in the gate metric's units."
    )
    notebook: Path = Field(
        default=PROJECT_ROOT / "notebooks" / "train.ipynb",
        description="The training notebook, which names the model every command acts on (`--notebook PATH` "
        "too); a relative path is taken from the current folder.",
    )
    kernel_name: str = Field(default="python3", description="Jupyter kernel that runs the notebook.")

    @field_validator("notebook")
    @classmethod
    def _absolute_notebook(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @model_validator(mode="after")
    def _names_from_the_notebook(self) -> PipelineSettings:
        """The notebook owns its names: MODEL_NAME and EXPERIMENT_NAME override them only when set."""
        for parameter, field in NAME_PARAMETERS.items():
            if not getattr(self, field):
                setattr(self, field, declared_name(self.notebook, parameter) or self.notebook.stem)
        return self

    @property
    def artifact_root(self) -> Path:
        return self.data_dir / "mlartifacts"

    @property
    def runs_dir(self) -> Path:
        """Where executed notebooks and their HTML reports are written before they are logged."""
        return self.data_dir / "runs"

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


class MonitorSettings(PipelineSettings, EvidenceSettings):
    """`python -m pipeline monitor`: the pipeline's, and the store the served processes record into (MONGO_URL)."""
