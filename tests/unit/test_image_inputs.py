"""The image's inputs: its Python packages are uv.lock's, and bentofile.yaml builds from the local base image."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.build import with_requirements
from pipeline.container import (
    IMAGES,
    LEAN_REQUIREMENTS,
    REQUIREMENTS,
    ContainerSettings,
    base_image_name,
    image_requirements,
)
from pipeline.errors import PipelineError
from pipeline.settings import PROJECT_ROOT


@pytest.mark.parametrize("runtime", sorted(IMAGES))
def test_the_images_requirements_are_the_locks(runtime: str) -> None:
    _, path = IMAGES[runtime]
    assert path.read_text() == image_requirements(runtime), "run `python -m pipeline requirements`"


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


SERVING = ("bentoml", "mlflow-skinny", "onnxruntime", "pika", "pymongo", "pydantic-settings")
TENSORFLOW_ONLY = ("keras", "tensorflow-cpu", "tensorflow")
# mlflow.keras and mlflow.pyfunc import it; a lean process reads the MLmodel file itself and MLflow's client
# imports it only where installed (tests/integration/test_model_zoo.py runs a lean process without it).
PANDAS = ("pandas",)


@pytest.mark.parametrize(
    ("requirements", "needs", "never"),
    [
        (REQUIREMENTS, SERVING + TENSORFLOW_ONLY[:2] + PANDAS, TRAINING_ONLY),
        (LEAN_REQUIREMENTS, SERVING, TRAINING_ONLY + TENSORFLOW_ONLY + PANDAS),
    ],
    ids=["tensorflow", "lean"],
)
def test_each_image_installs_what_the_service_and_worker_import_and_nothing_for_training(
    requirements: Path, needs: tuple[str, ...], never: tuple[str, ...]
) -> None:
    pinned = {
        line.split("==")[0]: line.split("==")[1].split()[0]
        for line in requirements.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for package in needs:
        assert package in pinned, package
    for package in (*never, "tf2onnx"):
        assert package not in pinned, package


@pytest.mark.parametrize(
    ("runtime", "requirements"),
    [("onnxruntime", "docker/requirements-lean.txt"), ("tensorflow", "docker/requirements.txt")],
)
def test_the_bento_installs_the_image_group_of_the_packaged_versions_runtime(
    runtime: str, requirements: str
) -> None:
    bentofile = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())
    built = with_requirements(bentofile, runtime)
    assert built["python"]["requirements_txt"] == requirements
    assert {k: v for k, v in built["python"].items() if k != "requirements_txt"} == {
        k: v for k, v in bentofile["python"].items() if k != "requirements_txt"
    }


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
