"""`mlflow run . -e train` and `-e notebook` (MLproject): any notebook with any of its parameters, trained into the
same store as every other command.

MLflow passes each `-P NAME=VALUE` an entry point does not declare as `--NAME VALUE`; `python -m pipeline.mlproject`
hands them to `python -m pipeline train` as the notebook's parameters (`-p NAME VALUE`), so the MLproject declares
no notebook's parameters and the notebook's parameters cell checks them, for the demo and one's own alike.

`mlflow run` hands its command the store it uses itself; when the person set no MLFLOW_TRACKING_URI that is
MLflow's own default, `mlflow.db` in the folder it started from (the checkout), and the pipeline trained and
registered into that file: a second store with its own version 1 and its own @champion. That default is
recognised here and dropped before the settings are read, so the project's store is used (DATA_DIR, or
MLFLOW_TRACKING_URI from .env). `mlflow run` keeps its own record of the command in its file unless
MLFLOW_TRACKING_URI names the project's store (`python -m pipeline store` prints it).
"""

from __future__ import annotations

import posixpath
import sys
from collections.abc import MutableMapping
from pathlib import Path
from urllib.request import pathname2url

from pipeline.errors import BadParameter


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


def train_arguments(passed: list[str]) -> list[str]:
    """`python -m pipeline train`'s arguments for what `mlflow run` passed: `--notebook PATH` as it is, every other
    `--NAME VALUE` as the notebook parameter `-p NAME VALUE`."""
    names, values = passed[0::2], passed[1::2]
    if len(names) != len(values) or not all(name.startswith("--") for name in names):
        raise BadParameter(
            f"expected --NAME VALUE pairs (`mlflow run -P NAME=VALUE`), got {' '.join(passed)}"
        )
    arguments = ["--no-progress"]
    for name, value in zip(names, values, strict=True):
        name = name.removeprefix("--")
        arguments += ["--notebook", value] if name == "notebook" else ["-p", name, value]
    return arguments


if __name__ == "__main__":
    from pipeline.__main__ import main

    try:
        sys.exit(main(["train", *train_arguments(sys.argv[1:])]))
    except BadParameter as exc:
        sys.exit(f"error: {exc}")
