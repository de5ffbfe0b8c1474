"""A person's own notebooks (not the shipped ones) through the real pipeline: papermill, a real SQLite MLflow
store. What does not fit is refused with a message naming what is missing, and nothing is registered; the gate
compares on the candidate's rows and keeps a champion of another contract.

Each papermill run costs a kernel and a check process (two TensorFlow imports), so a run here proves what only the
pipeline around the kernel does. What `log_model` refuses in the kernel is a row of the model zoo
(tests/support/zoo.py: a layer class defined in a cell, a classifier whose output is not probabilities, a layer
module needing one that does not ship, a subclassed model in a module beside the notebook), checked in process and
in the zoo's one check process; a failing cell becoming NotebookFailed with nothing registered is
tests/integration/test_train_pipeline.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from mlflow import MlflowClient

from pipeline import evaluation
from pipeline.errors import PipelineError
from pipeline.settings import PipelineSettings
from pipeline.train import train
from service.models import registry as read_registry
from service.models.scoring import held_out, score_on

pytestmark = pytest.mark.slow

PARAMETERS = """epochs: int = 3  # passes
split_seed: int = 1  # which rows are held out
registered_model_name: str = "wine"  # the registered model"""

WINE = """import keras
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split

from pipeline import notebook

run = notebook.start_run()
data = load_wine()
x_train, x_test, y_train, y_test = train_test_split(
    data.data.astype("float32"), data.target, test_size=0.3, random_state=split_seed, stratify=data.target
)
keras.utils.set_random_seed(0)
inputs = keras.Input(shape=(13,), name="measurements")
norm = keras.layers.Normalization()
norm.adapt(x_train)
outputs = keras.layers.Dense(3, activation=ACTIVATION)(keras.layers.Dense(16, activation="relu")(norm(inputs)))
model = keras.Model(inputs, outputs)
model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
model.fit(x_train, y_train, epochs=epochs, verbose=0)
"""

LOG = """notebook.log_model(model, task="classification", x_test=x_test, y_test=y_test, class_names=list(data.target_names))
notebook.end_run()
"""

DIABETES = """import keras
from sklearn.datasets import load_diabetes

from pipeline import notebook

run = notebook.start_run()
data = load_diabetes()
x, y = data.data.astype("float32"), data.target.astype("float32")
inputs = keras.Input(shape=(10,))
model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
model.compile(optimizer="adam", loss="mse")
model.fit(x[:300], y[:300], epochs=epochs, verbose=0)
notebook.log_model(model, task="regression", x_test=x[300:], y_test=y[300:], feature_names=data.feature_names)
notebook.end_run()
"""


def write(path: Path, code: str) -> Path:
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(code)]
    nbformat.write(notebook, path)
    return path


def run(store: Path, name: str, code: str, model: str = "wine", **parameters: str):
    settings = PipelineSettings(
        data_dir=store, mlflow_tracking_uri=None, model_name=model, notebook=write(store / f"{name}.ipynb", code),
        _env_file=None,
    )  # fmt: skip
    return settings, train(settings, dict(parameters), progress_bar=False)


def versions(store: Path, model: str) -> list[str]:
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    return [str(v.version) for v in client.search_model_versions(f"name='{model}'")]


def test_a_run_without_a_model_or_without_its_held_out_rows_is_refused_before_it_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `python -m pipeline train` checks of the run a kernel left (pipeline.train's `_checked`), on runs left
    as such notebooks leave them, made in process: no kernel is needed to leave them. The check where served is
    never asked; that a refusal there registers nothing is the papermill run of the layer module's test below."""
    from unittest.mock import create_autospec

    import keras
    import mlflow

    from pipeline import tracking
    from pipeline.lineage import MODEL_URI_TAG
    from pipeline.notebook import pip_requirements
    from pipeline.train import _checked

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = PipelineSettings(
        data_dir=tmp_path, mlflow_tracking_uri=None, model_name="nothing", _env_file=None
    )
    client = tracking.connect(settings)
    experiment = tracking.experiment_id(client, settings)
    with mlflow.start_run(experiment_id=experiment) as no_model:  # start_run, then end_run: nothing logged
        pass
    with mlflow.start_run(experiment_id=experiment) as no_rows:  # a model logged by hand, without its rows
        inputs = keras.Input(shape=(13,))
        by_hand = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
        info = mlflow.keras.log_model(by_hand, name="model", pip_requirements=pip_requirements())
        mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    where_served = create_autospec(evaluation.WhereServed, instance=True)
    for left, refused in (
        (no_model, r"the notebook logged no model; it must call pipeline\.notebook\.log_model"),
        (no_rows, r"logged no held-out rows \(evaluation/rows.npz\)"),
    ):
        with pytest.raises(PipelineError, match=refused):
            _checked(client, settings, client.get_run(left.info.run_id), tmp_path / "run.ipynb", where_served)
    where_served.check.assert_not_called()


DOUBLED = """@keras.saving.register_keras_serializable(package="own")
class Doubled(keras.layers.Layer):
    def call(self, inputs):
        return FACTOR * inputs
"""


def with_layer(prelude: str) -> str:
    """WINE with the Doubled layer after the normalisation, defined or imported by `prelude`."""
    code = WINE.replace("ACTIVATION", '"softmax"').replace("norm(inputs)", "Doubled()(norm(inputs))")
    return code.replace("import keras\n", f"import keras\n{prelude}", 1) + LOG


def test_a_layer_module_that_needs_what_does_not_ship_is_refused_by_the_check_where_served(
    tmp_path: Path,
) -> None:
    """The module beside the notebook ships; the module it imports in turn does not (it is not the model's
    code). The notebook's kernel, whose folder has both, trains and logs; the fresh process that loads the model
    as the service does, in an empty folder, cannot, and nothing is registered. The one papermill run here that
    the pipeline refuses after the kernel: the zoo's row of this form proves the check's reason in process."""
    (tmp_path / "scale_factor.py").write_text("FACTOR = 2\n")
    (tmp_path / "own_layers.py").write_text("import keras\nfrom scale_factor import FACTOR\n\n\n" + DOUBLED)
    with pytest.raises(
        PipelineError, match=r"does not serve where it is served: .*scale_factor.*; nothing registered"
    ):
        run(tmp_path, "layer_module", with_layer("from own_layers import Doubled\n"), "nothing", epochs="1")
    assert versions(tmp_path, "nothing") == []


def assert_named_by_the_notebook(client: MlflowClient, trained: Any, notebook: Path) -> None:
    """The run's model is registered under the name the notebook's parameters cell declares (`wine`), its run is
    in the experiment of the notebook file's name, and the model and its version say which notebook trained them."""
    assert trained.model_name == "wine" and [m.name for m in client.search_registered_models()] == ["wine"]
    run = client.get_run(trained.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "wine_quality"
    assert run.data.params["registered_model_name"] == "wine"
    assert client.get_registered_model("wine").description == f"Trained by {notebook} (nbship)."
    version = client.get_model_version("wine", trained.version)
    assert version.description == f"Trained by {notebook}." and version.tags["nbship.notebook"] == str(
        notebook
    )


def test_own_classifier_named_by_its_notebook_then_other_rows_then_another_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No MODEL_NAME: a notebook declaring `registered_model_name` registers there, never under the demo's name;
    its runs go to the experiment of its file's name; descriptions and tags name the notebook. Then the gate on
    the same model: the champion scored on the candidate's rows, and a champion of another contract kept."""
    for key in ("MODEL_NAME", "EXPERIMENT_NAME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    notebook = write(tmp_path / "wine_quality.ipynb", WINE.replace("ACTIVATION", '"softmax"') + LOG)
    settings = PipelineSettings(data_dir=tmp_path, notebook=notebook, _env_file=None)
    assert (settings.model_name, settings.experiment_name) == ("wine", "wine_quality")
    first = train(settings, {}, progress_bar=False)  # split_seed 1, the parameters cell's
    client = MlflowClient(settings.tracking_uri)
    assert_named_by_the_notebook(client, first, notebook)

    assert first.decision.promote and first.decision.metric == "test_accuracy"
    champion = client.get_model_version_by_alias("wine", "champion")
    contract = read_registry.contract_at(client, str(champion.source))
    assert (contract.input.shape, contract.output.class_names) == ((13,), ("class_0", "class_1", "class_2"))

    # Other held-out rows: the champion is scored again on the candidate's own rows, the way the service runs it.
    _, second = run(tmp_path, "wine", WINE.replace("ACTIVATION", '"softmax"') + LOG, split_seed="2")
    rows = held_out(client, second.run_id)
    with_rows = evaluation.load(
        read_registry.download_model(client, str(champion.source), tmp_path / "champion"),
        "wine",
        champion.version,
    )
    assert second.decision.champion_score == pytest.approx(score_on(with_rows, rows)["test_accuracy"])

    # A regressor under the same name takes other rows and answers otherwise: the champion stays.
    holder = client.get_model_version_by_alias("wine", "champion").version
    _, third = run(tmp_path, "diabetes", DIABETES, epochs="1")
    assert not third.decision.promote and third.decision.metric == "test_rmse"
    # It takes other inputs (and answers otherwise): not comparable.
    assert (
        third.decision.not_comparable
        == "inputs inputs float32 [-1, 10] against measurements float32 [-1, 13]"
    )
    assert client.get_model_version_by_alias("wine", "champion").version == holder
    tags = client.get_model_version("wine", third.version).tags
    assert tags["gate.decision"] == "refused" and tags["gate.not_comparable"]


def test_opened_by_hand_a_notebook_logs_its_parameters_cells_values(tmp_path: Path, monkeypatch) -> None:
    """No pipeline: the kernel runs the cells as a person would (nbclient, no papermill, no invocation), and the
    run holds the parameters cell's own values, each declared name once."""
    import nbclient

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write(
        tmp_path / "by-hand.ipynb",
        "from pipeline import notebook\n\nrun = notebook.start_run()\nnotebook.end_run()",
    )
    nbclient.NotebookClient(nbformat.read(path, as_version=4), kernel_name="python3", timeout=300).execute()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (found,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert found.data.params == {"epochs": "3", "split_seed": "1", "registered_model_name": "wine"}
    assert "nbship.invocation" not in found.data.tags


def test_the_notebook_names_its_model_and_experiment_and_its_versions_say_who_trained_them(
    tmp_path: Path, monkeypatch
) -> None:
    """No MODEL_NAME: a notebook declaring `registered_model_name` registers there, never under the demo's name;
    its runs go to the experiment of its file's name; descriptions and tags name the notebook. The store is a
    person's own, a new SQLite file named relative to the current folder (the kernel runs in the notebook's):
    made once, before the kernel opens it, and the one the kernel's run goes to."""
    for key in ("MODEL_NAME", "EXPERIMENT_NAME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    notebook = write(tmp_path / "wine_quality.ipynb", WINE.replace("ACTIVATION", '"softmax"') + LOG)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    uri = "sqlite:///stores/own.db"
    settings = PipelineSettings(data_dir=tmp_path, notebook=notebook, mlflow_tracking_uri=uri, _env_file=None)
    assert (settings.model_name, settings.experiment_name) == ("wine", "wine_quality")
    result = train(settings, {}, progress_bar=False)
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'elsewhere' / 'stores' / 'own.db'}"
    assert not (tmp_path / "stores").exists() and not (tmp_path / "mlflow.db").exists()
    assert_named_by_the_notebook(MlflowClient(settings.tracking_uri), result, notebook)
