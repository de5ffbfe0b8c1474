"""Under `mlflow run`, MLflow's default store (mlflow.db where it started) gives way to the project's store."""

from pathlib import Path

from pipeline.mlproject import drop_mlflow_run_default, mlflow_default_store


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
