"""The model as packaged in the BentoML model store, loaded the same way by the API and by the image's worker.

Inside a built Bento (a container image of it, say) the models live in the Bento's own store, `$BENTO_PATH/models`;
elsewhere in the local store that `python -m pipeline package` fills.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from service.models.loader import MLFLOW_MODEL_FOLDER, LoadedModel, load_model_dir
from service.schemas import LINEAGE_KEY, ModelLineage


def model_dir(stored: Any, tag: str) -> Path:
    """The MLflow model's folder inside a stored BentoML model (`stored` None: not in the store)."""
    if stored is None:
        raise RuntimeError(f"BentoML model {tag} is not in the model store: run `python -m pipeline package`")
    return Path(stored.path_of(MLFLOW_MODEL_FOLDER))


def lineage_of(stored: Any) -> ModelLineage:
    return ModelLineage.model_validate(stored.info.metadata[LINEAGE_KEY])


def load_stored(stored: Any, *, intra_op_threads: int = 1, inter_op_threads: int = 1) -> LoadedModel:
    """Load a stored BentoML model (as packaged from MLflow) under its registered name and version."""
    lineage = lineage_of(stored)
    return load_model_dir(
        model_dir(stored, str(stored.tag)),
        lineage.name,
        lineage.version,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )


def load_packaged(tag: str) -> LoadedModel:
    """The packaged model `tag`, from the Bento's own store when running inside a Bento, else the local store."""
    import bentoml
    from bentoml._internal.models.model import ModelStore

    bento_path = os.environ.get("BENTO_PATH")
    if bento_path and (Path(bento_path) / "models").is_dir():
        return load_stored(bentoml.models.get(tag, _model_store=ModelStore(Path(bento_path) / "models")))
    return load_stored(bentoml.models.get(tag))
