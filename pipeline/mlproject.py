"""`mlflow run . -e train` (MLproject) trains into the same store as every other command.

`mlflow run` hands its command the store it uses itself; when the person set no MLFLOW_TRACKING_URI that is
MLflow's own default, `mlflow.db` in the folder it started from (the checkout), and the pipeline trained and
registered into that file: a second store with its own version 1 and its own @champion. That default is
recognised here and dropped before the settings are read, so the project's store is used (DATA_DIR, or
MLFLOW_TRACKING_URI from .env). `mlflow run` keeps its own record of the command in its file unless
MLFLOW_TRACKING_URI names the project's store (`python -m pipeline store` prints it).
"""

from __future__ import annotations

import posixpath
from collections.abc import MutableMapping
from pathlib import Path
from urllib.request import pathname2url


def mlflow_default_store(folder: Path) -> str:
    """The tracking URI MLflow uses when none is set, started in `folder` (as mlflow's own code writes it)."""
    return "sqlite:///" + posixpath.abspath(pathname2url(str(folder.resolve() / "mlflow.db")))


def drop_mlflow_run_default(environ: MutableMapping[str, str], folder: Path) -> str | None:
    """Under `mlflow run` with MLflow's default store, forget that store (and `mlflow run`'s run in it, which
    cannot be the parent of a run in another store). Returns the dropped URI, None when nothing changed."""
    uri = environ.get("MLFLOW_TRACKING_URI")
    if "MLFLOW_RUN_ID" not in environ or uri != mlflow_default_store(folder):
        return None
    del environ["MLFLOW_TRACKING_URI"]
    del environ["MLFLOW_RUN_ID"]
    environ.pop("MLFLOW_EXPERIMENT_ID", None)
    return uri
