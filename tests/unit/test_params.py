from pathlib import Path

import pytest

from pipeline.errors import BadParameter
from pipeline.params import Parameter, cast, declared, parse_rule, resolve

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


def test_unknown_parameter_is_named(notebook_params):
    with pytest.raises(BadParameter, match=r"unknown parameter 'epoch'.*epochs"):
        resolve(notebook_params, {"epoch": "3"})


@pytest.mark.parametrize(("name", "raw"), [("epochs", "three"), ("epochs", "2.5"), ("learning_rate", "fast")])
def test_wrong_type_is_named(notebook_params, name, raw):
    with pytest.raises(BadParameter, match=rf"parameter '{name}' expects"):
        resolve(notebook_params, {name: raw})


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


# --- Ranges and choices declared in the help comment (issue 12) ---


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("learning_rate", "-1", r"'learning_rate' must be in \(0, 1\], got -1.0"),
        ("learning_rate", "0", r"'learning_rate' must be in \(0, 1\], got 0.0"),
        ("epochs", "0", r"'epochs' must be in \[1, 1000\], got 0"),
        ("dropout", "1", r"'dropout' must be in \[0, 1\), got 1.0"),
        ("batch_size", "-5", r"'batch_size' must be in \[1, 4096\], got -5"),
    ],
)
def test_a_value_outside_the_declared_range_is_named_with_the_range(notebook_params, name, raw, message):
    with pytest.raises(BadParameter, match=message):
        resolve(notebook_params, {name: raw})


def test_the_bounds_of_a_closed_range_are_accepted(notebook_params):
    values = resolve(notebook_params, {"epochs": "1", "learning_rate": "1", "dropout": "0"})
    assert (values["epochs"], values["learning_rate"], values["dropout"]) == (1, 1.0, 0.0)


def test_the_declaration_leaves_the_help_text(notebook_params):
    assert notebook_params["epochs"].help == "passes over the training rows"
    assert str(notebook_params["epochs"].rule) == "[1, 1000]"


@pytest.mark.parametrize(
    ("help_text", "rule", "allowed", "refused"),
    [
        ("x (0, ]", "(0, inf)", [1e9, 0.5], [0, -1]),
        ("x [-1.5, 2e3)", "[-1.5, 2000)", [-1.5, 1999], [2000, -2]),
        ("x choices: adam|sgd", "one of adam, sgd", ["adam", "sgd"], ["Adam", "rmsprop"]),
        ("x choices: a | b", "one of a, b", ["a", "b"], ["a | b"]),
    ],
)
def test_parse_rule(help_text, rule, allowed, refused):
    text, parsed = parse_rule(help_text)
    assert text == "x" and str(parsed) == rule
    assert all(parsed.allows(value) for value in allowed)
    assert not any(parsed.allows(value) for value in refused)


def test_help_without_a_declaration_has_no_rule():
    assert parse_rule("rows per step, see [1]") == ("rows per step, see [1]", None)


def _notebook_with(tmp_path, source: str) -> Path:
    import nbformat

    path = tmp_path / "n.ipynb"
    notebook = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
            "language_info": {"name": "python"},
        }
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell]
    nbformat.write(notebook, path)
    return path


def test_choices_are_checked(tmp_path):
    found = declared(_notebook_with(tmp_path, 'optimizer: str = "adam"  # the optimizer choices: adam|sgd'))
    assert resolve(found, {"optimizer": "sgd"})["optimizer"] == "sgd"
    with pytest.raises(BadParameter, match=r"'optimizer' must be in one of adam, sgd, got 'rmsprop'"):
        resolve(found, {"optimizer": "rmsprop"})


def test_a_default_outside_its_range_is_the_notebooks_mistake(tmp_path):
    found = declared(_notebook_with(tmp_path, "epochs: int = 0  # passes [1, 10]"))
    with pytest.raises(BadParameter, match=r"'epochs' must be in \[1, 10\], got 0"):
        resolve(found, {})


def test_a_range_on_a_string_is_refused(tmp_path):
    with pytest.raises(BadParameter, match="declares a range but is not an int or float"):
        declared(_notebook_with(tmp_path, 'name: str = "x"  # a name [1, 2]'))


def test_the_command_line_lists_the_parameters_with_their_ranges():
    import subprocess
    import sys

    listed = subprocess.run(
        [sys.executable, "-m", "pipeline", "params"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert "-p epochs (int in [1, 1000], default 30): passes over the training rows" in listed
    assert "-p seed (int in [0, 4294967295], default 42): weight initialisation and shuffling" in listed
