"""What the deployment tests (compose, Kubernetes) check the same way."""

from __future__ import annotations

from pathlib import Path

from pipeline.settings import PipelineSettings
from service.jobs.settings import JobSettings
from service.models.source import SourceSettings
from service.settings import ServiceSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = PROJECT_ROOT / "tests" / "schemas"

# Variables the containers set for other programs than ours, and why.
FOREIGN_VARIABLES = {
    "BENTOML_DO_NOT_TRACK": "BentoML: no usage reporting (and no client id written to a read-only home)",
    "BENTOML_HOME": "BentoML's working folders, moved to the writable /tmp of a read-only root",
}


def setting_names() -> set[str]:
    """Environment names of every setting the API and the worker read (no prefix: field name upper-cased)."""
    classes = (ServiceSettings, JobSettings, PipelineSettings, SourceSettings)
    return {name.upper() for cls in classes for name in cls.model_fields}


def unknown_variables(names: set[str]) -> set[str]:
    """The names that are neither a setting of ours nor a documented foreign variable: typos, stale names."""
    return names - setting_names() - set(FOREIGN_VARIABLES)
