"""`python -m pipeline promote`: both scores shown, a worse version refused without --force (audited as forced
with it), and the version that already holds @champion left alone, in a real MLflow store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import registry, tracking
from pipeline.errors import AliasError
from pipeline.lineage import DATA_SHA_TAG
from pipeline.promotion import promote
from pipeline.settings import PipelineSettings

MODEL = "promote-test"
METRIC = "test_accuracy"
SCORES = {"1": 0.99, "2": 0.14, "3": 0.995}


@pytest.fixture
def store(tmp_path: Path):
    """Three versions scored 0.99, 0.14 and 0.995 on the same rows (same data hash); version 1 is @champion."""
    import mlflow

    settings = PipelineSettings(data_dir=tmp_path / "data", mlflow_tracking_uri=None, model_name=MODEL)
    client = tracking.connect(settings)
    experiment = tracking.experiment_id(client, settings)
    for version, score in SCORES.items():
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_metric(METRIC, score)
            mlflow.set_tag(DATA_SHA_TAG, "same-rows")
            mlflow.log_text("not a model", "model/README")
        made = registry.register(
            client, MODEL, f"{run.info.artifact_uri}/model", run.info.run_id, {}, "a test"
        )
        assert str(made.version) == version
    registry.promote(client, MODEL, "champion", "1")
    return settings, client


def champion(client) -> str:
    return str(registry.holder(client, MODEL, "champion").version)


def test_a_worse_version_is_refused_with_both_scores(store):
    _, client = store
    with pytest.raises(AliasError) as refused:
        promote(client, MODEL, "champion", "2", METRIC)
    assert str(refused.value) == (
        "version 2 test_accuracy=0.1400 is worse than @champion version 1 test_accuracy=0.9900;"
        " give --force to promote it anyway (audited as forced)"
    )
    assert champion(client) == "1"
    assert "audit.action" not in client.get_model_version(MODEL, "2").tags


def test_force_promotes_a_worse_version_audited_as_forced(store):
    _, client = store
    promotion = promote(client, MODEL, "champion", "2", METRIC, force=True)
    assert promotion.summary(MODEL, "champion") == (
        f"@champion of {MODEL}: version 1 test_accuracy=0.9900 -> version 2 test_accuracy=0.1400 (forced)"
    )
    assert champion(client) == "2"
    tags = client.get_model_version(MODEL, "2").tags
    assert (tags["audit.action"], tags["audit.from"], tags["audit.forced"]) == ("promote", "1", "true")


def test_a_better_version_is_promoted_unforced(store):
    _, client = store
    promotion = promote(client, MODEL, "champion", "3", METRIC)
    assert promotion.moved and not promotion.forced
    assert client.get_model_version(MODEL, "3").tags["audit.forced"] == "false"
    assert champion(client) == "3"


def test_the_holder_is_left_alone_without_an_audit(store):
    _, client = store
    before = client.get_registered_model(MODEL).tags
    promotion = promote(client, MODEL, "champion", "1", METRIC)
    assert promotion.summary(MODEL, "champion") == (
        f"version 1 already holds @champion of {MODEL} (version 1 test_accuracy=0.9900); nothing changed"
    )
    assert client.get_registered_model(MODEL).tags == before
    assert registry.history(client, MODEL) == ["1"]


def test_the_command_line_refuses_then_forces(store):
    settings, client = store
    env = {**settings.kernel_env(), "MODEL_NAME": MODEL, "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pipeline", "promote", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=120)

    refused = cli("2")
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "error: version 2 test_accuracy=0.1400 is worse than @champion version 1"
    )
    forced = cli("2", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "version 1 test_accuracy=0.9900 -> version 2 test_accuracy=0.1400 (forced)" in forced.stdout
    assert champion(client) == "2"
