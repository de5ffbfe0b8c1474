"""The model as packaged in the BentoML model store, loaded the same way by the API and by the image's worker; and
the store's conventions packaging writes by (`python -m pipeline package`).

Inside a built Bento (a container image of it, say) the models live in the Bento's own store, `$BENTO_PATH/models`;
elsewhere in the local store. Two BentoML internals are touched here, each pinned by tests/unit/test_bentoml_internals.py:
a model store object for the Bento's own folder, and the store's `latest` file, which BentoML has no API to set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from service.models.lean import runtime_to_serve
from service.models.lineage import ModelLineage
from service.models.loader import LoadedModel, load_model_dir

LINEAGE_KEY = "lineage"  # the BentoML model's metadata entry holding its ModelLineage (written by packaging)
MLFLOW_MODEL_FOLDER = "mlflow_model"  # where bentoml.mlflow.import_model puts the MLflow model in its folder


def model_dir(stored: Any, tag: str) -> Path:
    """The MLflow model's folder inside a stored BentoML model (`stored` None: not in the store)."""
    if stored is None:
        raise RuntimeError(f"BentoML model {tag} is not in the model store: run `python -m pipeline package`")
    return Path(stored.path_of(MLFLOW_MODEL_FOLDER))


def lineage_of(stored: Any) -> ModelLineage:
    return ModelLineage.model_validate(stored.info.metadata[LINEAGE_KEY])


def load_stored(
    stored: Any, *, serve_runtime: str = "auto", intra_op_threads: int = 1, inter_op_threads: int = 1
) -> LoadedModel:
    """Load a stored BentoML model (as packaged from MLflow) under its registered name and version, by the runtime
    its version was given (SERVE_RUNTIME may ask TensorFlow instead)."""
    lineage = lineage_of(stored)
    return load_model_dir(
        model_dir(stored, str(stored.tag)),
        lineage.name,
        lineage.version,
        runtime=runtime_to_serve(lineage.runtime, serve_runtime),
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )


def stored_model(tag: str) -> Any:
    """The stored model `tag`, from the Bento's own store when running inside a Bento, else the local store."""
    import bentoml

    bento_path = os.environ.get("BENTO_PATH")
    if bento_path and (Path(bento_path) / "models").is_dir():
        from bentoml._internal.models.model import ModelStore

        return bentoml.models.get(tag, _model_store=ModelStore(Path(bento_path) / "models"))
    return bentoml.models.get(tag)


def load_packaged(
    tag: str, *, serve_runtime: str = "auto", intra_op_threads: int = 1, inter_op_threads: int = 1
) -> LoadedModel:
    """The packaged model `tag`, loaded from wherever `stored_model` finds it."""
    return load_stored(
        stored_model(tag),
        serve_runtime=serve_runtime,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )


def make_latest(tag: str) -> None:
    """Make `tag` its name's `latest` in the local store (a reused version after a rollback is the one to serve):
    BentoML's `latest` is the last one created, kept in a file of its store."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.tag import Tag

    parsed = Tag.from_taglike(tag)
    store = BentoMLContainer.model_store.get()
    Path(store._path, parsed.latest_path()).write_text(str(parsed.version))
