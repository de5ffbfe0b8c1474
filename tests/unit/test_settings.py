from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.settings import PROJECT_ROOT, PipelineSettings


def test_embedded_store_lives_under_the_data_folder_as_absolute_paths(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = PipelineSettings(data_dir=Path("relative/data"), _env_file=None)
    assert settings.data_dir == (tmp_path / "relative/data").resolve()
    assert settings.data_dir.is_absolute()
    assert settings.tracking_uri == f"sqlite:///{settings.data_dir}/mlflow.db"
    assert settings.artifact_root == settings.data_dir / "mlartifacts"
    assert settings.is_embedded_store


def test_default_data_folder_does_not_depend_on_the_current_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert PipelineSettings(_env_file=None).data_dir == PROJECT_ROOT / ".nbship"


def test_tracking_uri_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    settings = PipelineSettings(_env_file=None)
    assert settings.tracking_uri == "http://127.0.0.1:5999"
    assert not settings.is_embedded_store


def test_env_file_is_read(monkeypatch, tmp_path):
    monkeypatch.delenv("GATE_MARGIN", raising=False)
    env = tmp_path / ".env"
    env.write_text("GATE_MARGIN=0.01\nMODEL_NAME=other\n")
    settings = PipelineSettings(_env_file=env)
    assert settings.gate_margin == 0.01
    assert settings.model_name == "other"


@pytest.mark.parametrize(("field", "value"), [("gate_margin", -0.1), ("gate_metric", "loss"), ("ui_port", 0)])
def test_invalid_settings_are_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        PipelineSettings(_env_file=None, **{field: value})


def test_kernel_env_names_the_same_store(monkeypatch, tmp_path):
    for key in ("DATA_DIR", "MLFLOW_TRACKING_URI", "EXPERIMENT_NAME"):
        monkeypatch.delenv(key, raising=False)
    for tracking_uri in (None, "sqlite:////elsewhere/mlflow.db", "http://127.0.0.1:5999"):
        settings = PipelineSettings(data_dir=tmp_path, mlflow_tracking_uri=tracking_uri, _env_file=None)
        monkeypatch.setattr("os.environ", {**settings.kernel_env()})
        in_kernel = PipelineSettings(_env_file=None)
        assert in_kernel.tracking_uri == settings.tracking_uri
        assert in_kernel.artifact_location == settings.artifact_location
        assert in_kernel.data_dir == settings.data_dir


@pytest.mark.parametrize(
    ("tracking_uri", "local_artifacts"),
    [(None, True), ("sqlite:////x/mlflow.db", True), ("http://127.0.0.1:5000", False)],
)
def test_artifacts_stay_under_the_data_folder_unless_a_server_decides(
    tmp_path, tracking_uri, local_artifacts
):
    settings = PipelineSettings(data_dir=tmp_path, mlflow_tracking_uri=tracking_uri, _env_file=None)
    expected = (tmp_path / "mlartifacts").as_uri() if local_artifacts else None
    assert settings.artifact_location == expected


def notebook_with(path: Path, parameters: str) -> Path:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell("# mine"), cell]
    nbformat.write(notebook, path)
    return path


def test_the_notebook_names_its_model_and_experiment(monkeypatch, tmp_path):
    for key in ("MODEL_NAME", "EXPERIMENT_NAME"):
        monkeypatch.delenv(key, raising=False)
    declared = notebook_with(
        tmp_path / "wine.ipynb",
        'epochs: int = 3  # passes\nregistered_model_name: str = "wine-classifier"  # the model\n'
        'experiment_name: str = "wine"  # the runs',
    )
    settings = PipelineSettings(notebook=declared, _env_file=None)
    assert (settings.model_name, settings.experiment_name) == ("wine-classifier", "wine")
    # Declaring neither, the notebook's file name names both.
    bare = notebook_with(tmp_path / "churn_model.ipynb", "epochs: int = 3  # passes")
    settings = PipelineSettings(notebook=bare, _env_file=None)
    assert (settings.model_name, settings.experiment_name) == ("churn_model", "churn_model")


def test_model_name_and_experiment_name_override_the_notebook_only_when_set(monkeypatch, tmp_path):
    declared = notebook_with(
        tmp_path / "wine.ipynb", 'registered_model_name: str = "wine-classifier"  # the model'
    )
    monkeypatch.setenv("MODEL_NAME", "other")
    monkeypatch.setenv("EXPERIMENT_NAME", "trials")
    settings = PipelineSettings(notebook=declared, _env_file=None)
    assert (settings.model_name, settings.experiment_name) == ("other", "trials")


def test_the_shipped_demo_keeps_its_names(monkeypatch):
    for key in ("MODEL_NAME", "EXPERIMENT_NAME", "NOTEBOOK"):
        monkeypatch.delenv(key, raising=False)
    settings = PipelineSettings(_env_file=None)
    assert (settings.model_name, settings.experiment_name) == ("digits-classifier", "digits")


def test_the_service_serves_what_was_packaged_last_unless_a_setting_names_a_model(monkeypatch, tmp_path):
    from service.models.last_packaged import LastPackaged, record
    from service.settings import ServiceSettings

    for key in ("MODEL_NAME", "MODEL_TAG", "DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(
        ValueError, match=r"run `python -m pipeline package` .* or set MODEL_TAG .* or MODEL_NAME"
    ):
        _ = ServiceSettings(_env_file=None, data_dir=tmp_path).bento_model_tag
    record(tmp_path, LastPackaged(model_name="Wine Classifier", model_tag="wine-classifier:v2-ab"))
    assert ServiceSettings(_env_file=None, data_dir=tmp_path).bento_model_tag == "wine-classifier:v2-ab"
    assert (
        ServiceSettings(_env_file=None, data_dir=tmp_path, model_name="Digits").bento_model_tag
        == "digits:latest"
    )
    named = ServiceSettings(_env_file=None, data_dir=tmp_path, model_tag="wine:v3-ab")
    assert named.bento_model_tag == "wine:v3-ab"
    (tmp_path / "packaged.json").write_text("{")  # not a record: as if nothing was packaged
    with pytest.raises(ValueError, match=r"nothing was packaged"):
        _ = ServiceSettings(_env_file=None, data_dir=tmp_path).bento_model_tag


def test_a_relative_sqlite_store_is_the_current_folders_for_every_process(monkeypatch, tmp_path):
    """The kernel runs in the notebook's folder: it is given the file the person named, not a file of its own."""
    for key in ("DATA_DIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    settings = PipelineSettings(mlflow_tracking_uri="sqlite:///stores/my.db?timeout=20", _env_file=None)
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/stores/my.db?timeout=20"
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setattr("os.environ", {**settings.kernel_env()})
    assert PipelineSettings(_env_file=None).tracking_uri == settings.tracking_uri
    for kept in ("sqlite:///:memory:", "sqlite://", "postgresql://db/mlflow"):
        assert PipelineSettings(mlflow_tracking_uri=kept, _env_file=None).tracking_uri == kept


NOTEBOOK_COMMANDS = [
    ["train"],
    ["params"],
    ["promote", "3"],
    ["rollback"],
    ["package"],
    ["build"],
    ["container"],
]


@pytest.mark.parametrize("command", NOTEBOOK_COMMANDS, ids=lambda command: command[0])
def test_every_command_on_the_notebooks_model_takes_the_notebook_as_an_option_or_a_setting(
    command, monkeypatch, tmp_path
):
    """`--notebook` and NOTEBOOK name the same model, a relative path taken from the current folder."""
    from pipeline.__main__ import command_settings, parser

    for key in ("MODEL_NAME", "EXPERIMENT_NAME", "NOTEBOOK"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "mine").mkdir()
    notebook_with(
        tmp_path / "mine" / "wine.ipynb", 'registered_model_name: str = "wine-classifier"  # the model'
    )
    monkeypatch.chdir(tmp_path)

    demo = command_settings(parser().parse_args(command))
    assert demo.notebook == PROJECT_ROOT / "notebooks" / "train.ipynb"
    by_option = command_settings(parser().parse_args([*command, "--notebook", "mine/wine.ipynb"]))
    monkeypatch.setenv("NOTEBOOK", "mine/wine.ipynb")
    by_setting = command_settings(parser().parse_args(command))
    for settings in (by_option, by_setting):
        assert settings.notebook == tmp_path.resolve() / "mine" / "wine.ipynb"
        assert (settings.model_name, settings.experiment_name) == ("wine-classifier", "wine")
    assert demo.model_name == "digits-classifier"


def test_a_notebook_that_is_not_there_is_refused_naming_the_folder_it_was_looked_for_in(
    monkeypatch, tmp_path
):
    from pipeline.__main__ import command_settings, parser
    from pipeline.errors import PipelineError

    monkeypatch.delenv("NOTEBOOK", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        PipelineError, match=rf"--notebook names {tmp_path.resolve()}/wine\.ipynb, which is not"
    ):
        command_settings(parser().parse_args(["rollback", "--notebook", "wine.ipynb"]))
    monkeypatch.setenv("NOTEBOOK", "wine.ipynb")
    with pytest.raises(PipelineError, match=r"NOTEBOOK names .* current folder"):
        command_settings(parser().parse_args(["package"]))
    assert command_settings(parser().parse_args(["store"])).tracking_uri  # a command that needs no notebook
