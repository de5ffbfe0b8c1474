"""The image's inputs: its Python packages are uv.lock's, and bentofile.yaml builds from the local base image."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.container import (
    REQUIREMENTS,
    ContainerSettings,
    base_image_name,
    image_requirements,
)
from pipeline.errors import PipelineError
from pipeline.settings import PROJECT_ROOT


def test_the_images_requirements_are_the_locks() -> None:
    assert REQUIREMENTS.read_text() == image_requirements(), "run `python -m pipeline requirements`"


# What training needs and serving does not: the notebook's kernel and report, and the MLflow server with its UI.
TRAINING_ONLY = (
    "papermill",
    "nbconvert",
    "ipykernel",
    "scikit-learn",
    "matplotlib",
    "mlflow",
    "flask",
    "alembic",
)


def test_the_image_installs_what_the_service_and_worker_import_and_nothing_for_training() -> None:
    pinned = {
        line.split("==")[0]: line.split("==")[1].split()[0]
        for line in REQUIREMENTS.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for package in (
        "bentoml",
        "mlflow-skinny",
        "keras",
        "tensorflow-cpu",
        "pika",
        "pymongo",
        "pydantic-settings",
    ):
        assert package in pinned, package
    for package in TRAINING_ONLY:
        assert package not in pinned, package


def test_the_bentofile_builds_on_the_local_base_image_and_the_locked_requirements() -> None:
    bentofile = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())
    assert base_image_name() == bentofile["docker"]["base_image"]
    assert base_image_name().startswith("localhost/")  # made by docker/base-image.sh, never pulled
    assert (PROJECT_ROOT / bentofile["python"]["requirements_txt"]).resolve() == REQUIREMENTS.resolve()
    envs = {env["name"]: env["value"] for env in bentofile["envs"]}
    assert "FOLLOW_ALIAS" not in envs  # pinned: the image's own model
    assert envs["PYTHONPATH"] == "/home/bentoml/bento/src"


def test_a_bentofile_without_base_image_is_refused(tmp_path: Path) -> None:
    bentofile = tmp_path / "bentofile.yaml"
    bentofile.write_text("service: x:Y\n")
    with pytest.raises(PipelineError, match=r"names no docker\.base_image"):
        base_image_name(bentofile)


def test_the_ca_bundle_defaults_to_ssl_cert_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/some/bundle.pem")
    monkeypatch.delenv("CA_BUNDLE", raising=False)
    assert ContainerSettings(_env_file=None).ca_bundle == Path("/some/bundle.pem")
    monkeypatch.delenv("SSL_CERT_FILE")
    assert ContainerSettings(_env_file=None).ca_bundle is None
    monkeypatch.setenv("CA_BUNDLE", "/proxy/ca.pem")
    assert ContainerSettings(_env_file=None).ca_bundle == Path("/proxy/ca.pem")
