"""`python -m pipeline package`: the registry's @champion into the BentoML store, with lineage, reused if there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ChampionStore, run_pipeline

pytestmark = pytest.mark.slow


def stored_models(bentoml_home: Path, name: str = "digits-classifier") -> dict[str, dict]:
    folder = bentoml_home / "models" / name
    return {
        path.parent.name: yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*/model.yaml"))
    }


def latest(bentoml_home: Path, name: str = "digits-classifier") -> str:
    return (bentoml_home / "models" / name / "latest").read_text().strip()


def bare_serve_tag(data_dir: Path) -> str:
    """The model a bare `bentoml serve service.service:PredictionService` serves: no MODEL_TAG, no MODEL_NAME."""
    from service.settings import ServiceSettings

    return ServiceSettings(data_dir=data_dir, model_tag=None, model_name="", _env_file=None).bento_model_tag


def test_package_stores_lineage_and_reuses_the_stored_version(
    champion_store: ChampionStore, tmp_path: Path
) -> None:
    home = tmp_path / "bentoml"
    first = run_pipeline(champion_store, "package", BENTOML_HOME=str(home))
    assert first.returncode == 0, first.stderr
    tag = f"v{champion_store.version}-{champion_store.run_id[:8]}"
    assert first.stdout.strip() == (
        f"stored digits-classifier version {champion_store.version} as BentoML model digits-classifier:{tag}"
    )
    # A reused version is recorded as the one to serve too.
    (champion_store.data_dir / "packaged.json").unlink()
    second = run_pipeline(champion_store, "package", BENTOML_HOME=str(home))
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("reused ")
    assert bare_serve_tag(champion_store.data_dir) == f"digits-classifier:{tag}"

    models = stored_models(home)
    assert list(models) == [tag]
    info = models[tag]
    assert info["module"] == "bentoml.mlflow"
    labels = info["labels"]
    assert labels["registered_name"] == "digits-classifier"
    assert labels["registered_version"] == champion_store.version
    assert labels["run_id"] == champion_store.run_id
    assert len(labels["notebook_sha256"]) == 64
    assert 0.0 < float(labels["test_accuracy"]) <= 1.0
    lineage = info["metadata"]["lineage"]
    assert lineage["alias"] == "champion"
    assert set(lineage["metrics"]) == {"test_accuracy", "test_macro_f1", "test_log_loss"}
    assert (home / "models" / "digits-classifier" / tag / "mlflow_model" / "MLmodel").exists()


def test_after_a_rollback_packaging_makes_the_older_version_latest_again(
    champion_store: ChampionStore, tmp_path: Path
) -> None:
    """Version 2 (the same run registered again) takes @champion, then is rolled back to version 1; a bare
    `bentoml serve` serves what was packaged last each time."""
    store = ChampionStore(tmp_path / "store", *_rest(champion_store))
    shutil.copytree(champion_store.data_dir, store.data_dir)  # artifacts stay where they are (absolute paths)
    home = str(tmp_path / "bentoml")
    _register_again(store)
    assert run_pipeline(store, "promote", "2").returncode == 0
    assert run_pipeline(store, "package", BENTOML_HOME=home).returncode == 0
    assert latest(Path(home)).startswith("v2-")
    assert bare_serve_tag(store.data_dir) == f"digits-classifier:v2-{store.run_id[:8]}"
    assert run_pipeline(store, "rollback").returncode == 0
    again = run_pipeline(store, "package", BENTOML_HOME=home)
    assert again.returncode == 0, again.stderr
    assert latest(Path(home)).startswith("v1-")
    assert bare_serve_tag(store.data_dir) == f"digits-classifier:v1-{store.run_id[:8]}"
    assert sorted(stored_models(Path(home))) == sorted([f"v1-{store.run_id[:8]}", f"v2-{store.run_id[:8]}"])


def test_package_without_a_champion_says_so(tmp_path: Path, champion_store: ChampionStore) -> None:
    empty = ChampionStore(tmp_path / "empty", *_rest(champion_store))
    done = run_pipeline(empty, "package", BENTOML_HOME=str(tmp_path / "bentoml"))
    assert done.returncode == 1
    assert done.stderr.strip() == "error: model 'digits-classifier' has no @champion: train one first"


def _rest(store: ChampionStore) -> tuple:
    return (store.version, store.run_id, store.rows, store.probabilities)


def _register_again(store: ChampionStore) -> None:
    import os

    import mlflow
    from mlflow import MlflowClient

    from pipeline import registry
    from pipeline.settings import PipelineSettings

    settings = PipelineSettings(data_dir=store.data_dir, mlflow_tracking_uri=None)
    client = MlflowClient(settings.tracking_uri)
    first = client.get_model_version(settings.model_name, "1")
    # MLflow's SQL registry looks the logged model up through the process's global tracking URI, which earlier
    # tests in this process may have pointed at other stores: point it at this one for the registration only.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        created = registry.register(
            client, settings.model_name, str(first.source), str(first.run_id), {}, "a test"
        )
    finally:
        mlflow.set_tracking_uri(previous)
    assert str(created.version) == "2"
    assert (
        "MLFLOW_TRACKING_URI" not in os.environ or os.environ["MLFLOW_TRACKING_URI"] != settings.tracking_uri
    )
