"""A person's own notebooks (not the shipped ones) through the real pipeline: papermill, a real SQLite MLflow
store. What does not fit is refused with a message naming what is missing, and nothing is registered; the gate
compares on the candidate's rows and keeps a champion of another contract."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient

from pipeline import evaluation
from pipeline.errors import NotebookFailed, PipelineError
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


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("own-notebooks")


def run(store: Path, name: str, code: str, model: str = "wine", **parameters: str):
    settings = PipelineSettings(
        data_dir=store, mlflow_tracking_uri=None, model_name=model, notebook=write(store / f"{name}.ipynb", code),
        _env_file=None,
    )  # fmt: skip
    return settings, train(settings, dict(parameters), progress_bar=False)


def versions(store: Path, model: str) -> list[str]:
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    return [str(v.version) for v in client.search_model_versions(f"name='{model}'")]


def test_a_notebook_that_logs_no_model_is_refused(store: Path) -> None:
    with pytest.raises(
        PipelineError, match=r"the notebook logged no model; it must call pipeline\.notebook\.log_model"
    ):
        run(
            store,
            "no_model",
            WINE.replace("ACTIVATION", '"softmax"') + "notebook.end_run()\n",
            model="nothing",
        )
    assert versions(store, "nothing") == []


def test_a_model_logged_without_its_held_out_rows_is_refused(store: Path) -> None:
    by_hand = """import mlflow
info = mlflow.keras.log_model(model, name="model")
mlflow.set_tag("nbship.model_uri", info.model_uri)
notebook.end_run()
"""
    with pytest.raises(PipelineError, match=r"logged no held-out rows \(evaluation/rows.npz\)"):
        run(store, "no_rows", WINE.replace("ACTIVATION", '"softmax"') + by_hand, model="nothing")
    assert versions(store, "nothing") == []


def test_a_model_whose_output_does_not_fit_the_task_is_refused_in_its_cell(store: Path) -> None:
    with pytest.raises(
        NotebookFailed,
        match=r"ContractError: output 'outputs': a classification output answers probabilities in \[0, 1\]|must sum to 1",
    ):
        run(store, "linear", WINE.replace("ACTIVATION", '"linear"') + LOG, model="nothing")
    assert versions(store, "nothing") == []


DOUBLED = """@keras.saving.register_keras_serializable(package="own")
class Doubled(keras.layers.Layer):
    def call(self, inputs):
        return FACTOR * inputs
"""


def with_layer(prelude: str) -> str:
    """WINE with the Doubled layer after the normalisation, defined or imported by `prelude`."""
    code = WINE.replace("ACTIVATION", '"softmax"').replace("norm(inputs)", "Doubled()(norm(inputs))")
    return code.replace("import keras\n", f"import keras\n{prelude}", 1) + LOG


def test_a_custom_layer_defined_in_a_cell_is_refused_saying_where_to_move_it(store: Path) -> None:
    with pytest.raises(
        NotebookFailed, match=r"class 'Doubled' is defined in the notebook itself; move it to a module beside"
    ):
        run(store, "layer_in_cell", with_layer("FACTOR = 2\n" + DOUBLED), model="nothing")
    assert versions(store, "nothing") == []


def test_a_layer_module_that_needs_what_does_not_ship_is_refused_by_the_check_where_served(
    store: Path,
) -> None:
    """The module beside the notebook ships; the module it imports in turn does not (it is not the model's
    code). The notebook's kernel, whose folder has both, trains and logs; the fresh process that loads the model
    as the service does, in an empty folder, cannot, and nothing is registered."""
    (store / "scale_factor.py").write_text("FACTOR = 2\n")
    (store / "own_layers.py").write_text("import keras\nfrom scale_factor import FACTOR\n\n\n" + DOUBLED)
    with pytest.raises(
        PipelineError, match=r"does not serve where it is served: .*scale_factor.*; nothing registered"
    ):
        run(store, "layer_module", with_layer("from own_layers import Doubled\n"), model="nothing")
    assert versions(store, "nothing") == []


SUBCLASSED = """import keras


@keras.saving.register_keras_serializable(package="own")
class TwoLayers(keras.Model):
    def __init__(self, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.scale = keras.layers.Normalization()
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.answer = keras.layers.Dense(classes, activation="softmax")

    def call(self, inputs):
        return self.answer(self.hidden(self.scale(inputs)))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}
"""


def test_a_subclassed_model_in_a_module_beside_the_notebook_is_registered_and_loads_where_served(
    store: Path,
) -> None:
    """No input layer to read its contract from: it is read from the rows it is handed and what it answers. Its
    class ships with it and loads in the fresh process of the check."""
    (store / "own_models.py").write_text(SUBCLASSED)
    code = WINE.replace("ACTIVATION", '"softmax"').replace(
        "import keras\n", "import keras\nfrom own_models import TwoLayers\n", 1
    )
    built = code.index("inputs = keras.Input")
    code = (
        code[:built]
        + """model = TwoLayers()
model.scale.adapt(x_train)
model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
model.fit(x_train, y_train, epochs=epochs, verbose=0)
"""
        + LOG
    )
    _, outcome = run(store, "subclassed", code, model="subclassed")
    assert outcome.decision.promote, outcome
    assert versions(store, "subclassed") == ["1"]


def test_own_classifier_then_other_rows_then_another_contract(store: Path) -> None:
    settings, first = run(store, "wine", WINE.replace("ACTIVATION", '"softmax"') + LOG, split_seed="1")
    assert first.decision.promote and first.decision.metric == "test_accuracy"
    client = MlflowClient(settings.tracking_uri)
    champion = client.get_model_version_by_alias("wine", "champion")
    contract = read_registry.contract_at(client, str(champion.source))
    assert (contract.input.shape, contract.output.class_names) == ((13,), ("class_0", "class_1", "class_2"))

    # Other held-out rows: the champion is scored again on the candidate's own rows, the way the service runs it.
    _, second = run(store, "wine", WINE.replace("ACTIVATION", '"softmax"') + LOG, split_seed="2")
    rows = held_out(client, second.run_id)
    with_rows = evaluation.load(
        read_registry.download_model(client, str(champion.source), store / "champion"),
        "wine",
        champion.version,
    )
    assert second.decision.champion_score == pytest.approx(score_on(with_rows, rows)["test_accuracy"])

    # A regressor under the same name takes other rows and answers otherwise: the champion stays.
    holder = client.get_model_version_by_alias("wine", "champion").version
    _, third = run(store, "diabetes", DIABETES, epochs="1")
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
    client = MlflowClient(settings.tracking_uri)
    assert result.model_name == "wine" and [m.name for m in client.search_registered_models()] == ["wine"]
    run = client.get_run(result.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "wine_quality"
    assert run.data.params["registered_model_name"] == "wine"
    assert client.get_registered_model("wine").description == f"Trained by {notebook} (nbship)."
    version = client.get_model_version("wine", result.version)
    assert version.description == f"Trained by {notebook}." and version.tags["nbship.notebook"] == str(
        notebook
    )
