"""The training pipeline end to end on real MLflow stores: papermill runs the real notebook (1 epoch).

The scenario shares one store and runs in file order: first version, a worse one, manual moves, a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import nbformat
import pytest
from mlflow import MlflowClient
from support.processes import free_port, http_ok, running

from pipeline import registry
from pipeline.errors import AliasError, NotebookFailed
from pipeline.settings import PipelineSettings
from pipeline.train import train
from pipeline.ui import ui_command

pytestmark = pytest.mark.slow  # papermill trains the notebook six times

ROOT = Path(__file__).resolve().parents[2]
MODEL = "digits-test"


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> PipelineSettings:
    return PipelineSettings(
        data_dir=tmp_path_factory.mktemp("store"), mlflow_tracking_uri=None, model_name=MODEL, _env_file=None
    )


@pytest.fixture(scope="module")
def client(settings) -> MlflowClient:
    return MlflowClient(settings.tracking_uri)


@pytest.fixture(scope="module")
def first(settings):
    return train(settings, {"epochs": "1"}, progress_bar=False)


def champion_version(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def test_first_run_is_tracked_registered_and_champion(first, client, settings):
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "1"
    assert run.data.params["registered_model_name"] == MODEL
    assert {"test_accuracy", "test_macro_f1", "test_log_loss"} <= set(run.data.metrics)
    assert [item.path for item in client.list_artifacts(first.run_id, "evaluation")] == [
        "evaluation/rows.npz"
    ]
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["test rows"]
    assert run.data.tags["nbship.task"] == "classification"
    assert run.data.metrics["test_accuracy"] > 0.5
    assert len(client.get_metric_history(first.run_id, "epoch_val_accuracy")) == 1

    artifacts = {
        item.path for folder in ("notebook", "plots") for item in client.list_artifacts(first.run_id, folder)
    }
    assert artifacts == {
        "notebook/train.ipynb",
        "notebook/train.html",
        "plots/training_curves.png",
        "plots/confusion_matrix.png",
    }
    assert run.info.artifact_uri.startswith(settings.artifact_root.as_uri())
    assert (settings.artifact_root / first.run_id / "artifacts" / "plots" / "confusion_matrix.png").is_file()
    tags = run.data.tags
    assert len(tags["nbship.notebook_sha256"]) == 64
    assert len(tags["nbship.data_sha256"]) == 64
    assert json.loads(tags["nbship.parameters"])["epochs"] == 1
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert tags["mlflow.source.git.commit"] == head.stdout.strip()

    assert first.version == "1"
    assert first.decision.promote
    assert champion_version(client) == "1"
    version = client.get_model_version(MODEL, "1")
    assert version.run_id == first.run_id
    assert version.tags["gate.decision"] == "promoted"
    assert version.tags["nbship.data_sha256"] == tags["nbship.data_sha256"]
    assert first.executed_notebook.is_file()
    assert first.executed_notebook == settings.runs_dir / first.run_id / "train.ipynb"  # named by the run


def test_model_has_signature_and_explicit_requirements(first, client):
    version = client.get_model_version(MODEL, first.version)
    info = mlflow.models.get_model_info(f"models:/{MODEL}/{version.version}")
    inputs = info.signature.inputs.to_dict()[0]
    outputs = info.signature.outputs.to_dict()[0]
    assert (inputs["tensor-spec"]["dtype"], list(inputs["tensor-spec"]["shape"])) == ("float32", [-1, 64])
    assert (outputs["tensor-spec"]["dtype"], list(outputs["tensor-spec"]["shape"])) == ("float32", [-1, 10])
    requirements = Path(
        mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version.version}/requirements.txt")
    ).read_text()
    names = {line.split("==")[0] for line in requirements.split()}
    assert names == {"tensorflow-cpu", "keras", "mlflow", "numpy"}
    assert all("==" in line for line in requirements.split())


def test_a_worse_run_leaves_the_champion(first, client, settings):
    worse = train(settings, {"epochs": "1", "learning_rate": "1e-7"}, progress_bar=False)
    assert worse.version == "2"
    assert not worse.decision.promote
    assert champion_version(client) == "1"
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["gate.decision"] == "refused"
    assert tags["gate.champion_version"] == "1"
    assert float(tags["gate.champion_score"]) == first.decision.candidate_score
    assert float(tags["gate.candidate_score"]) < float(tags["gate.champion_score"])


def test_promote_and_rollback_move_the_alias_with_an_audit_trail(first, client):
    assert registry.promote(client, MODEL, "champion", "2") == "1"
    assert champion_version(client) == "2"
    audit = client.get_model_version(MODEL, "2").tags
    assert (audit["audit.action"], audit["audit.from"], audit["audit.to"]) == ("promote", "1", "2")
    assert audit["audit.by"] and audit["audit.at"]

    assert registry.rollback(client, MODEL, "champion") == ("2", "1")
    assert champion_version(client) == "1"
    assert client.get_model_version(MODEL, "1").tags["audit.action"] == "rollback"
    with pytest.raises(AliasError, match="no earlier holder"):
        registry.rollback(client, MODEL, "champion")
    with pytest.raises(AliasError, match="no version '99'"):
        registry.promote(client, MODEL, "champion", "99")


def test_the_command_line_promotes_and_rolls_back(first, client, settings):
    env = {**settings.kernel_env(), "MODEL_NAME": MODEL, "PATH": "/usr/bin:/bin"}
    refused = subprocess.run(
        [sys.executable, "-m", "pipeline", "promote", "2"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert refused.returncode == 2  # version 2 is the worse run: both scores shown, --force named
    assert "is worse than @champion version 1" in refused.stderr and "--force" in refused.stderr
    promote = subprocess.run(
        [sys.executable, "-m", "pipeline", "promote", "2", "--force"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert promote.returncode == 0, promote.stderr
    assert "-> version 2 test_accuracy=" in promote.stdout and "(forced)" in promote.stdout
    back = subprocess.run(
        [sys.executable, "-m", "pipeline", "rollback"], capture_output=True, text=True, env=env, check=False
    )
    assert back.returncode == 0, back.stderr
    assert champion_version(client) == "1"


def test_a_failing_cell_registers_nothing(first, client, settings, tmp_path):
    notebook = nbformat.read(settings.notebook, as_version=4)
    notebook.cells.insert(2, nbformat.v4.new_code_cell("raise ValueError('bad data on purpose')"))
    broken = tmp_path / "train.ipynb"
    nbformat.write(notebook, broken)
    before = len(client.search_model_versions(f"name='{MODEL}'"))

    with pytest.raises(NotebookFailed) as failure:
        train(settings.model_copy(update={"notebook": broken}), {"epochs": "1"}, progress_bar=False)

    message = str(failure.value)
    assert "cell 2 of train.ipynb (\"raise ValueError('bad data on purpose')\")" in message
    assert "raised ValueError: bad data on purpose" in message
    executed = Path(message.rsplit("Executed notebook: ", 1)[1])
    assert executed.is_file()
    assert len(client.search_model_versions(f"name='{MODEL}'")) == before
    experiment = client.get_experiment_by_name(settings.experiment_name)
    failed = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FAILED'")
    assert len(failed) == 1
    assert {item.path for item in client.list_artifacts(failed[0].info.run_id, "notebook")} == {
        "notebook/train.ipynb",
        "notebook/train.html",
    }


def test_against_a_real_mlflow_server(first, settings, tmp_path):
    """`pipeline ui` serves the store; a run through that HTTP server registers and gates like the embedded one."""
    port = free_port()
    ui = settings.model_copy(update={"ui_port": port})
    url = f"http://127.0.0.1:{port}"
    with running(ui_command(ui), http_ok(f"{url}/health"), "mlflow server", tmp_path / "mlflow.log"):
        remote = settings.model_copy(update={"mlflow_tracking_uri": url})
        result = train(remote, {"epochs": "1", "seed": "7"}, progress_bar=False)
        client = MlflowClient(url)
        version = client.get_model_version(MODEL, result.version)
        assert version.run_id == result.run_id
        assert version.tags["gate.decision"] in {"promoted", "refused"}
        assert champion_version(client) in {"1", result.version}
        names = {model.name for model in client.search_registered_models()}
        assert MODEL in names


def test_champion_is_rescored_when_its_split_differs(first, client):
    """A champion trained on other rows is loaded and scored on the current test rows, matching the notebook."""
    from pipeline import gate
    from service.models.scoring import held_out

    run = client.get_run(first.run_id)
    rows = held_out(client, first.run_id)
    sha = run.data.tags["nbship.data_sha256"]
    champion = client.get_model_version(MODEL, first.version)
    client.set_tag(first.run_id, "nbship.data_sha256", "another-split")
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(
        f"http://127.0.0.1:{free_port()}"
    )  # the process points elsewhere: use the client's
    try:
        rescored = gate.champion_scores(client, champion, lambda: rows, sha)
    finally:
        mlflow.set_tracking_uri(previous_uri)
        client.set_tag(first.run_id, "nbship.data_sha256", sha)
    for metric in ("test_accuracy", "test_macro_f1", "test_log_loss"):
        assert rescored[metric] == pytest.approx(run.data.metrics[metric], abs=1e-6)


def test_mlproject_entry_point_nests_the_pipeline_run(first, client, settings):
    """`mlflow run . -e train` (README): its run is the parent of the notebook's run, which registers a version."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **settings.kernel_env(), "MODEL_NAME": MODEL, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    before = len(client.search_model_versions(f"name='{MODEL}'"))
    command = ["mlflow", "run", str(ROOT), "-e", "train", "-P", "epochs=1", "--env-manager", "local"]
    done = subprocess.run(
        [*command, "--experiment-name", settings.experiment_name],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert len(versions) == before + 1
    newest = max(versions, key=lambda version: int(version.version))
    child = client.get_run(newest.run_id)
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["mlflow.project.entryPoint"] == "train"
    assert parent.info.status == "FINISHED"


def test_mlproject_without_a_tracking_uri_trains_into_the_projects_store(first, client, settings, tmp_path):
    """`mlflow run . -e notebook -P notebook=...` (docs/pipeline.md) with nothing set: MLflow's default (a new
    mlflow.db in the checkout) used to get the run, its own version 1 and @champion; the project's store gets them
    now. The notebook is named relative to where `mlflow run` is typed."""
    import shutil

    checkout = tmp_path / "checkout"  # a copy: `mlflow run` itself still writes its record to ./mlflow.db
    skip = (".venv", ".nox", ".tools", ".git", ".nbship", "__pycache__", "*.db", "mlruns", ".*_cache")
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(*skip))
    bin_dir = str(Path(sys.executable).parent)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env |= {**settings.kernel_env(), "MODEL_NAME": MODEL, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    before = len(client.search_model_versions(f"name='{MODEL}'"))
    notebook = ["-P", "notebook=notebooks/train.ipynb", "-P", "epochs=1"]
    command = ["mlflow", "run", ".", "-e", "notebook", *notebook, "--env-manager", "local"]
    done = subprocess.run(
        command, cwd=checkout, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"training into this project's store {settings.tracking_uri}" in done.stderr
    assert len(client.search_model_versions(f"name='{MODEL}'")) == before + 1
    own = MlflowClient(f"sqlite:///{checkout / 'mlflow.db'}")  # `mlflow run`'s record of the command only
    assert own.search_registered_models() == []
