"""`mlflow run` (MLproject): any notebook with any of its parameters, as MLflow composes the command; MLflow's
default store (mlflow.db where it started) gives way to the project's store."""

import shlex
from pathlib import Path

import pytest

from pipeline.errors import BadParameter
from pipeline.mlproject import drop_mlflow_run_default, mlflow_default_store, train_arguments

ROOT = Path(__file__).resolve().parents[2]


def test_mlflow_run_with_mlflows_default_store_is_dropped(tmp_path: Path) -> None:
    default = mlflow_default_store(tmp_path)
    assert default == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    environ = {"MLFLOW_TRACKING_URI": default, "MLFLOW_RUN_ID": "abc", "MLFLOW_EXPERIMENT_ID": "0", "X": "1"}
    assert drop_mlflow_run_default(environ, tmp_path) == default
    assert environ == {"X": "1"}


def test_a_store_the_person_chose_is_kept(tmp_path: Path) -> None:
    chosen = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLFLOW_RUN_ID": "abc"}
    assert drop_mlflow_run_default(dict(chosen), tmp_path) is None
    outside = {"MLFLOW_TRACKING_URI": mlflow_default_store(tmp_path)}  # not under `mlflow run`: no run id
    assert drop_mlflow_run_default(outside, tmp_path) is None and outside["MLFLOW_TRACKING_URI"]


def train_settings(entry_point: str, parameters: dict[str, str], tmp_path: Path):
    """The command MLflow composes for `mlflow run . -e ENTRY_POINT -P ...` typed in `tmp_path`, as the train
    command it runs: its parameters and its settings."""
    from mlflow.projects import _project_spec

    from pipeline.__main__ import command_settings, parser

    command = _project_spec.load_project(str(ROOT)).get_entry_point(entry_point)
    words = shlex.split(command.compute_command(parameters, storage_dir=str(tmp_path)))
    assert words[:3] == ["python", "-m", "pipeline.mlproject"], words
    args = parser().parse_args(["train", *train_arguments(words[3:])])
    assert args.no_progress
    return dict(args.parameter), command_settings(args)


def test_the_train_entry_point_takes_any_parameter_of_the_notebook_notebook_names(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTEBOOK", raising=False)
    parameters, settings = train_settings("train", {"epochs": "10", "learning_rate": "5e-4"}, tmp_path)
    assert parameters == {"epochs": "10", "learning_rate": "5e-4"}  # checked by the notebook's cell, not here
    assert settings.notebook == ROOT / "notebooks" / "train.ipynb"


def test_the_notebook_entry_point_takes_ones_own_notebook_from_where_mlflow_run_is_typed(
    tmp_path, monkeypatch
):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "churn.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)
    parameters, settings = train_settings(
        "notebook", {"notebook": "mine/churn.ipynb", "units": "64", "note": "two words"}, tmp_path
    )
    assert parameters == {"units": "64", "note": "two words"}
    assert settings.notebook == tmp_path.resolve() / "mine" / "churn.ipynb"
    assert settings.model_name == "churn"


def test_anything_but_name_value_pairs_is_refused():
    assert train_arguments([]) == ["--no-progress"]
    for passed in (["--epochs"], ["epochs", "3"]):
        with pytest.raises(BadParameter, match="expected --NAME VALUE pairs"):
            train_arguments(passed)
