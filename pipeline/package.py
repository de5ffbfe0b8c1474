"""`python -m pipeline package`: the registry's `@champion` into the BentoML model store, with its lineage.

The alias is resolved to a version first and that version imported (`models:/<name>/<version>`), so the stored
model and its labels describe the same version even if the alias moves meanwhile. A version already stored is
reused, and becomes the store's `latest` again (after a rollback, the older version is the one to serve). Either
way it is recorded as the model a bare `bentoml serve` serves (service/models/last_packaged.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline import tracking
from pipeline.errors import PipelineError
from pipeline.settings import PipelineSettings
from service.models.last_packaged import LastPackaged, record
from service.models.lean import TENSORFLOW
from service.models.lineage import ModelLineage, lineage_of_version
from service.models.registry import holder


@dataclass(frozen=True)
class Packaged:
    tag: str  # BentoML model tag, name:version
    version: str  # registered version
    reused: bool
    runtime: str = TENSORFLOW  # what answers it (service/models/lean.py): the image it needs
    runtime_reason: str = ""


def package(settings: PipelineSettings, alias: str | None = None) -> Packaged:
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    from service.models.contract import ContractError, read_contract
    from service.serving.packaged import LINEAGE_KEY, MLFLOW_MODEL_FOLDER, lineage_of, make_latest
    from service.settings import bento_model_name

    client = tracking.connect(settings)  # also sets MLFLOW_TRACKING_URI, which bentoml.mlflow needs
    alias = alias or settings.champion_alias
    version = holder(client, settings.model_name, alias)
    if version is None:
        raise PipelineError(f"model {settings.model_name!r} has no @{alias}: train one first")
    number = str(version.version)  # MLflow answers an int from some calls, a str from others
    if not version.run_id:
        raise PipelineError(f"version {number} of {settings.model_name!r} has no training run")
    tag = f"{bento_model_name(settings.model_name)}:v{number}-{version.run_id[:8]}"
    try:
        stored = bentoml.models.get(tag)
    except NotFound:
        pass
    else:
        make_latest(str(stored.tag))
        return _recorded(settings, _packaged(str(stored.tag), lineage_of(stored), reused=True))

    lineage = lineage_of_version(client, version, alias)
    try:
        stored = bentoml.mlflow.import_model(
            tag,
            f"models:/{settings.model_name}/{number}",
            signatures={"predict": {"batchable": True}},
            labels=_labels(lineage),
            metadata={LINEAGE_KEY: lineage.model_dump(exclude_none=True)},
        )
    except BentoMLException as exc:  # e.g. the version's artifacts were deleted from the store
        raise PipelineError(f"cannot package version {number} of {settings.model_name!r}: {exc}") from None
    try:
        read_contract(Path(stored.path_of(MLFLOW_MODEL_FOLDER)))
    except ContractError as exc:
        bentoml.models.delete(stored.tag)
        raise PipelineError(f"version {number} of {settings.model_name!r} cannot be served: {exc}") from None
    return _recorded(settings, _packaged(str(stored.tag), lineage, reused=False))


def _packaged(tag: str, lineage: ModelLineage, reused: bool) -> Packaged:
    runtime = lineage.runtime or TENSORFLOW
    return Packaged(tag, lineage.version, reused, runtime, lineage.runtime_reason or "")


def _recorded(settings: PipelineSettings, packaged: Packaged) -> Packaged:
    """What a bare `bentoml serve service.service:PredictionService` serves from now on (with this DATA_DIR)."""
    record(settings.data_dir, LastPackaged(model_name=settings.model_name, model_tag=packaged.tag))
    return packaged


def _labels(lineage: ModelLineage) -> dict[str, str]:
    """Searchable in `bentoml models list`; the full lineage is in the model's metadata."""
    labels = {
        "registered_name": lineage.name,
        "registered_version": lineage.version,
        "alias": lineage.alias,
        "run_id": lineage.run_id,
        "notebook_sha256": lineage.notebook_sha256 or "",
    }
    labels.update({key: f"{value:.6g}" for key, value in sorted(lineage.metrics.items())})
    return labels
