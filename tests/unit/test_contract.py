"""The model contract (service.models.contract): what can be served, how answers look per task, when two differ."""

from __future__ import annotations

import time

import numpy as np
import pytest

from service.models import metrics
from service.models.contract import STRING, ContractError, ModelContract, Output, Tensor

F32 = np.dtype(np.float32)


def classifier(k: int = 3, **kwargs) -> ModelContract:
    return ModelContract.single("classification", Tensor((4,), F32, "x"), Tensor((k,), F32, "y"), **kwargs)


def answer(contract: ModelContract, values: np.ndarray) -> dict:
    return contract.answer({contract.output.name: values})


def test_classifier_answers_index_name_and_probabilities() -> None:
    contract = classifier(class_names=("cat", "dog", "eel"))
    outputs = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]], dtype=np.float32)
    assert answer(contract, outputs) == {
        "predictions": [1, 0],
        "classes": ["dog", "cat"],
        "probabilities": outputs.astype(np.float64).tolist(),  # the model's own values, not rounded
    }


def test_a_sigmoid_is_a_binary_classifier_with_both_probabilities() -> None:
    contract = classifier(1, class_names=("no", "yes"))
    assert contract.output.binary and contract.output.n_classes == 2
    answered = answer(contract, np.array([[0.9], [0.2]]))
    assert answered["predictions"] == [1, 0] and answered["classes"] == ["yes", "no"]
    np.testing.assert_allclose(answered["probabilities"], [[0.1, 0.9], [0.8, 0.2]])


def test_a_multilabel_output_answers_the_classes_on_at_its_threshold() -> None:
    contract = ModelContract.single(
        "multilabel",
        Tensor((4,), F32, "x"),
        Tensor((3,), F32, "labels"),
        ("even", "big", "prime"),
        threshold=0.6,
    )
    answered = answer(contract, np.array([[0.9, 0.61, 0.1], [0.2, 0.5, 0.6]]))
    assert answered["predictions"] == [[0, 1], [2]] and answered["classes"] == [["even", "big"], ["prime"]]
    assert contract.check_outputs({"labels": np.full((2, 3), 0.9)}, 2)["labels"].shape == (
        2,
        3,
    )  # no sum to 1


def test_regressors_answer_their_values() -> None:
    one = ModelContract.single("regression", Tensor((4,), F32, "x"), Tensor((1,), F32, "y"))
    assert answer(one, np.array([[1.5], [2.5]])) == {"predictions": [1.5, 2.5]}
    two = ModelContract.single("regression", Tensor((4,), F32, "x"), Tensor((2,), F32, "y"))
    assert answer(two, np.array([[1.0, 2.0]])) == {"predictions": [[1.0, 2.0]]}


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            np.zeros((2, 4)),
            "the model answered output 'y' of shape [2, 4] for 2 rows; its signature says [-1, 3]",
        ),
        (np.full((2, 3), np.nan), "not finite"),
        (np.full((2, 3), 5.0), "probabilities in [0, 1]"),
        (np.full((2, 3), 0.1), "must sum to 1 per row"),
    ],
)
def test_outputs_that_break_the_contract_are_refused(outputs: np.ndarray, message: str) -> None:
    with pytest.raises(ContractError, match=message.replace("[", r"\[").replace("]", r"\]")):
        classifier().check_outputs({"y": outputs}, 2)


def test_what_cannot_be_served_is_refused_with_a_reason() -> None:
    with pytest.raises(ContractError, match="output 'y': 2 class names for 3 classes"):
        classifier(class_names=("a", "b"))
    with pytest.raises(ContractError, match="3 feature names for input"):
        ModelContract.single(
            "regression", Tensor((2, 2), F32, "x"), Tensor((1,), F32, "y"), feature_names=("a", "b", "c")
        )
    with pytest.raises(ContractError, match="task 'ranking'"):
        ModelContract.single("ranking", Tensor((4,), F32, "x"), Tensor((1,), F32, "y"))  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="answers strings"):
        ModelContract.single("regression", Tensor((4,), F32, "x"), Tensor((1,), STRING, "y"))
    with pytest.raises(ContractError, match="must name each of them"):
        ModelContract((Tensor((1,), F32, "a"), Tensor((1,), F32)), classifier().outputs)
    with pytest.raises(ContractError, match="input names must be unique"):
        ModelContract((Tensor((1,), F32, "a"), Tensor((1,), F32, "a")), classifier().outputs)


def test_strings_and_several_named_tensors_are_served() -> None:
    contract = ModelContract(
        (Tensor((1,), F32, "alcohol"), Tensor((), STRING, "region")),
        (
            Output(Tensor((3,), F32, "cultivar"), "classification"),
            Output(Tensor((1,), F32, "quality"), "regression"),
        ),
    )
    assert not contract.single_input and contract.scalar_columns and contract.task == "classification"
    assert contract.describe()["inputs"][1] == {"name": "region", "dtype": "string", "shape": [-1]}
    assert contract.named_outputs([np.zeros((1, 3)), np.zeros((1, 1))]).keys() == {"cultivar", "quality"}


def test_contracts_differ_by_input_output_task_or_names() -> None:
    assert classifier().differs_from(classifier()) is None
    assert classifier().differs_from(classifier(4)) == "output 'y' [-1, 3] against [-1, 4]"
    other_input = ModelContract.single("classification", Tensor((13,), F32, "x"), Tensor((3,), F32, "y"))
    assert classifier().differs_from(other_input) == "inputs x float32 [-1, 4] against x float32 [-1, 13]"
    assert (
        classifier(class_names=("a", "b", "c")).differs_from(classifier())
        == "output 'y': other class or value names"
    )


def test_metric_direction_decides_better() -> None:
    assert metrics.better("test_accuracy", 0.9, 0.8)
    assert not metrics.better("test_accuracy", 0.8, 0.9)
    assert metrics.better("test_rmse", 40.0, 50.0)  # lower RMSE is better
    assert not metrics.better("test_rmse", 50.0, 40.0)
    assert not metrics.better("test_rmse", 49.5, 50.0, margin=1.0)


def test_regression_and_classification_scores() -> None:
    regressor = ModelContract.single("regression", Tensor((4,), F32, "x"), Tensor((1,), F32, "y"))
    scores = metrics.score(regressor, {"y": np.array([[1.0], [3.0]])}, np.array([2.0, 3.0]))
    assert scores["test_mae"] == pytest.approx(0.5) and scores["test_rmse"] == pytest.approx(np.sqrt(0.5))
    assert set(
        metrics.score(classifier(), {"y": np.array([[0.2, 0.8, 0.0], [1.0, 0.0, 0.0]])}, np.array([1, 0]))
    ) == {
        "test_accuracy",
        "test_macro_f1",
        "test_log_loss",
    }


def test_several_outputs_are_scored_each_under_its_name_and_the_gate_metric_names_the_first() -> None:
    contract = ModelContract(
        (Tensor((4,), F32, "x"),),
        (
            Output(Tensor((2,), F32, "kind"), "classification"),
            Output(Tensor((1,), F32, "size"), "regression"),
        ),
    )
    outputs = {"kind": np.array([[0.9, 0.1], [0.2, 0.8]]), "size": np.array([[1.0], [2.0]])}
    scores = metrics.score(contract, outputs, {"kind": np.array([0, 1]), "size": np.array([1.0, 2.5])})
    assert scores["kind/test_accuracy"] == 1.0 and scores["size/test_mae"] == pytest.approx(0.25)
    assert metrics.default_gate_metric(contract) == "kind/test_accuracy"
    assert metrics.tie_breaker("kind/test_accuracy") == "kind/test_log_loss"
    assert metrics.better("size/test_rmse", 0.1, 0.2)


def test_answers_that_differ_from_the_notebooks_say_where_and_by_how_much() -> None:
    from service.models.check import answers_differ

    contract = classifier()
    ours = {"y": np.tile([1.0, 0.0, 0.0], (5, 1))}
    assert answers_differ(contract, ours, {"y": np.full((5, 3), 1 / 3)}) == (
        "the answers: values differ from the notebook's model's by up to 0.667"
    )
    assert "shape [5, 3] where the notebook's model answered [5, 4]" in str(
        answers_differ(contract, ours, {"y": np.zeros((5, 4))})
    )
    assert answers_differ(contract, ours, ours) is None


def test_a_model_source_swaps_atomically_and_remembers_refusals() -> None:
    from service.models.source import ModelSource

    class Fixed:
        def __init__(self, version: str) -> None:
            self.name, self.version, self.contract = "m", version, classifier()

        def predict(self, rows: dict) -> dict:
            return {"y": np.full((len(rows["x"]), 3), 1 / 3)}

    changes: list[tuple[str, str]] = []
    source = ModelSource(
        Fixed("1"), {"version": "1"}, on_change=lambda result, v: changes.append((result, v))
    )
    taken = source.current  # a batch in flight holds this one
    source.swap(Fixed("2"), {"version": "2"})
    assert (taken.version, source.current.version, source.lineage) == ("1", "2", {"version": "2"})
    source.refuse("3", "its contract is not the served one")
    assert source.refused("3") and not source.refused("2")
    view = source.view()
    assert (view["mode"], view["current_version"], view["last_switch"]["from"]) == ("pinned", "2", "1")
    assert view["refused"][0]["reason"] == "its contract is not the served one"
    assert changes == [("switched", "2"), ("refused", "3")]


def test_a_follower_whose_poll_failed_tries_again_soon_not_at_its_next_poll() -> None:
    """A download that failed once (the registry busy) is retried within seconds, backing off, though the
    follower polls hourly (as where a webhook wakes it): the switch does not wait an hour."""
    import threading

    from service.models.source import ModelSource

    calls: list[float] = []
    done = threading.Event()

    def follow(_source: ModelSource) -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OSError("the artifact store did not answer")
        done.set()

    source = ModelSource(object(), follow=follow, mode="following @champion")  # type: ignore[arg-type]
    source.start(interval_s=3600)
    assert done.wait(timeout=60), f"{len(calls)} polls"
    assert calls[2] - calls[1] > calls[1] - calls[0] > 0  # backing off: 1 s, then 2 s


@pytest.mark.parametrize(
    "signature",
    [
        {"inputs": [("pixels", "float32", (-1, 64))], "outputs": [("probabilities", "float32", (-1, 10))]},
        {"inputs": [("note", "str", (-1,)), ("x", "int64", (-1, 3))], "outputs": [("y", "float32", (-1, 1))]},
        {"columns": [("age", "double"), ("bmi", "float"), ("n", "long"), ("k", "integer")]},
    ],
    ids=["tensor", "tensors-with-a-string", "columns"],
)
def test_the_mlmodel_reader_reads_the_signature_as_mlflow_does(signature: dict, tmp_path) -> None:
    """service.models.mlmodel reads MLmodel without MLflow: it finds what mlflow.models.Model.load finds."""
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from service.models.mlmodel import MLmodel, tensors_only

    def tensors(entries: list) -> Schema:
        return Schema([TensorSpec(np.dtype(dtype), shape, name=name) for name, dtype, shape in entries])

    if "columns" in signature:
        logged = ModelSignature(
            inputs=Schema([ColSpec(kind, name) for name, kind in signature["columns"]]),
            outputs=Schema([ColSpec("double", "y")]),
        )
    else:
        logged = ModelSignature(inputs=tensors(signature["inputs"]), outputs=tensors(signature["outputs"]))
    Model(signature=logged, metadata={"nbship": {"task": "regression"}}, flavors={"keras": {"a": 1}}).save(
        tmp_path / "MLmodel"
    )
    ours, theirs = MLmodel.read(tmp_path), Model.load(str(tmp_path))
    assert (ours.flavors, ours.metadata) == (theirs.flavors, theirs.metadata)
    for mine, schema in ((ours.inputs, theirs.signature.inputs), (ours.outputs, theirs.signature.outputs)):
        assert mine is not None and tensors_only(mine) == schema.is_tensor_spec()
        assert [spec.name for spec in mine] == schema.input_names()
        if schema.is_tensor_spec():
            assert [(np.dtype(s.dtype), s.shape) for s in mine] == [(t.type, t.shape) for t in schema.inputs]
        else:
            assert [s.type for s in mine] == [c.type.name for c in schema.inputs]


def test_a_process_without_pandas_refuses_a_version_that_only_pyfunc_serves(tmp_path, monkeypatch) -> None:
    """The lean image has no pandas, which mlflow.pyfunc imports: a version that is not a Keras model (one
    registered by hand) is refused there, saying where it can be served, rather than failing on an import."""
    import sys

    from mlflow.models import Model

    from service.models.loader import load_model_dir

    contract = classifier()
    Model(
        signature=contract.signature(),
        metadata=contract.metadata(),
        flavors={"python_function": {"loader_module": "mlflow.sklearn"}},
    ).save(tmp_path / "MLmodel")
    monkeypatch.setitem(sys.modules, "pandas", None)  # as in the lean image: `import pandas` fails
    with pytest.raises(
        ContractError, match=r"version 7 is not a Keras model: .* pandas, which this process does not"
    ):
        load_model_dir(tmp_path, "m", "7")
