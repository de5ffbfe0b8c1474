from pathlib import Path

import pytest

from pipeline.errors import BadParameter
from pipeline.params import Parameter, cast, declared, resolve

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "train.ipynb"


@pytest.fixture(scope="module")
def notebook_params():
    return declared(NOTEBOOK)


def test_the_notebook_declares_the_training_parameters(notebook_params):
    expected = {"epochs", "learning_rate", "batch_size", "hidden_units", "seed", "registered_model_name"}
    assert expected <= set(notebook_params)
    assert notebook_params["epochs"].type_name == "int"
    assert notebook_params["learning_rate"].type_name == "float"
    assert notebook_params["registered_model_name"].type_name == "str"


def test_overrides_are_cast_to_the_declared_types(notebook_params):
    values = resolve(notebook_params, {"epochs": "3", "learning_rate": "1e-2", "registered_model_name": "m"})
    assert values["epochs"] == 3 and isinstance(values["epochs"], int)
    assert values["learning_rate"] == 0.01
    assert values["registered_model_name"] == "m"
    assert values["batch_size"] == notebook_params["batch_size"].default
    assert "pipeline_invocation" not in values


def test_unknown_parameter_is_named(notebook_params):
    with pytest.raises(BadParameter, match=r"unknown parameter 'epoch'.*epochs"):
        resolve(notebook_params, {"epoch": "3"})


@pytest.mark.parametrize(("name", "raw"), [("epochs", "three"), ("epochs", "2.5"), ("learning_rate", "fast")])
def test_wrong_type_is_named(notebook_params, name, raw):
    with pytest.raises(BadParameter, match=rf"parameter '{name}' expects"):
        resolve(notebook_params, {name: raw})


def test_the_pipelines_own_parameter_cannot_be_given(notebook_params):
    with pytest.raises(BadParameter, match="set by the pipeline"):
        resolve(notebook_params, {"pipeline_invocation": "x"})


@pytest.mark.parametrize(
    ("type_name", "raw", "value"),
    [
        ("int", "7", 7),
        ("float", "3", 3.0),
        ("bool", "true", True),
        ("bool", "False", False),
        ("str", "7", "7"),
    ],
)
def test_cast(type_name, raw, value):
    result = cast(Parameter("p", type_name, None, ""), raw)
    assert result == value and type(result) is type(value)


def test_int_does_not_accept_bool():
    with pytest.raises(BadParameter):
        cast(Parameter("p", "int", 1, ""), "True")


def test_a_notebook_without_parameters_cell_is_refused(tmp_path):
    import nbformat

    path = tmp_path / "plain.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(notebook, path)
    with pytest.raises(BadParameter, match="no cell tagged 'parameters'"):
        declared(path)


def test_a_missing_notebook_is_refused(tmp_path):
    with pytest.raises(BadParameter, match="notebook not found"):
        declared(tmp_path / "nope.ipynb")
