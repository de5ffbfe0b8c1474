"""The model contract (service.models.contract): what can be served, how answers look per task, when two differ."""

from __future__ import annotations

import numpy as np
import pytest

from service.models import metrics
from service.models.contract import ContractError, ModelContract, Tensor

F32 = np.dtype(np.float32)


def classifier(k: int = 3, **kwargs) -> ModelContract:
    return ModelContract("classification", Tensor((4,), F32), Tensor((k,), F32), **kwargs)


def test_classifier_answers_index_name_and_probabilities() -> None:
    contract = classifier(class_names=("cat", "dog", "eel"))
    outputs = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]], dtype=np.float32)
    answer = contract.answer(outputs)
    assert answer == {
        "predictions": [1, 0],
        "classes": ["dog", "cat"],
        "probabilities": outputs.astype(np.float64).tolist(),  # the model's own values, not rounded
    }


def test_a_sigmoid_is_a_binary_classifier_with_both_probabilities() -> None:
    contract = classifier(1, class_names=("no", "yes"))
    assert contract.binary and contract.n_classes == 2
    answer = contract.answer(np.array([[0.9], [0.2]]))
    assert answer["predictions"] == [1, 0] and answer["classes"] == ["yes", "no"]
    np.testing.assert_allclose(answer["probabilities"], [[0.1, 0.9], [0.8, 0.2]])


def test_regressors_answer_their_values() -> None:
    one = ModelContract("regression", Tensor((4,), F32), Tensor((1,), F32))
    assert one.answer(np.array([[1.5], [2.5]])) == {"predictions": [1.5, 2.5]}
    two = ModelContract("regression", Tensor((4,), F32), Tensor((2,), F32))
    assert two.answer(np.array([[1.0, 2.0]])) == {"predictions": [[1.0, 2.0]]}


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (np.zeros((2, 4)), "the model answered shape [2, 4] for 2 rows; its signature says [-1, 3]"),
        (np.full((2, 3), np.nan), "not finite"),
        (np.full((2, 3), 5.0), "probabilities in [0, 1]"),
        (np.full((2, 3), 0.1), "must sum to 1 per row"),
    ],
)
def test_outputs_that_break_the_contract_are_refused(outputs: np.ndarray, message: str) -> None:
    with pytest.raises(ContractError, match=message.replace("[", r"\[").replace("]", r"\]")):
        classifier().check_outputs(outputs, 2)


def test_what_cannot_be_served_is_refused_with_a_reason() -> None:
    with pytest.raises(
        ContractError, match="string input such as a TextVectorization layer is not supported"
    ):
        ModelContract("classification", Tensor((1,), np.dtype(object)), Tensor((3,), F32))
    with pytest.raises(ContractError, match="2 class names for a model with 3 classes"):
        classifier(class_names=("a", "b"))
    with pytest.raises(ContractError, match="3 feature names for input"):
        ModelContract("regression", Tensor((2, 2), F32), Tensor((1,), F32), feature_names=("a", "b", "c"))
    with pytest.raises(ContractError, match="task 'ranking'"):
        ModelContract("ranking", Tensor((4,), F32), Tensor((1,), F32))  # type: ignore[arg-type]


def test_contracts_differ_by_input_output_task_or_names() -> None:
    assert classifier().differs_from(classifier()) is None
    assert classifier().differs_from(classifier(4)) == "output [-1, 3] against [-1, 4]"
    other_input = ModelContract("classification", Tensor((13,), F32), Tensor((3,), F32))
    assert classifier().differs_from(other_input) == "input float32 [-1, 4] against float32 [-1, 13]"
    assert classifier(class_names=("a", "b", "c")).differs_from(classifier()) == "other class names"


def test_metric_direction_decides_better() -> None:
    assert metrics.better("test_accuracy", 0.9, 0.8)
    assert not metrics.better("test_accuracy", 0.8, 0.9)
    assert metrics.better("test_rmse", 40.0, 50.0)  # lower RMSE is better
    assert not metrics.better("test_rmse", 50.0, 40.0)
    assert not metrics.better("test_rmse", 49.5, 50.0, margin=1.0)


def test_regression_and_classification_scores() -> None:
    regressor = ModelContract("regression", Tensor((4,), F32), Tensor((1,), F32))
    scores = metrics.score(regressor, np.array([[1.0], [3.0]]), np.array([2.0, 3.0]))
    assert scores["test_mae"] == pytest.approx(0.5) and scores["test_rmse"] == pytest.approx(np.sqrt(0.5))
    assert set(
        metrics.score(classifier(), np.array([[0.2, 0.8, 0.0], [1.0, 0.0, 0.0]]), np.array([1, 0]))
    ) == {
        "test_accuracy",
        "test_macro_f1",
        "test_log_loss",
    }


def test_a_logged_model_answering_another_shape_than_its_signature_is_refused_naming_both() -> None:
    from pipeline.errors import PipelineError
    from pipeline.evaluation import check_served_answers
    from service.models.loader import LoadedModel
    from service.models.scoring import HeldOut

    x = np.zeros((5, 4), dtype=np.float32)
    wrong = LoadedModel("m", "1", "keras", classifier(), lambda rows: np.full((len(rows), 4), 0.25))
    with pytest.raises(
        PipelineError, match=r"answered shape \[5, 4\] for 5 rows; its signature says \[-1, 3\]"
    ):
        check_served_answers(wrong, HeldOut(x, np.zeros(5), np.full((5, 3), 1 / 3)))
    drifted = LoadedModel(
        "m", "1", "keras", classifier(), lambda rows: np.tile([1.0, 0.0, 0.0], (len(rows), 1))
    )
    with pytest.raises(
        PipelineError,
        match=r"answers the held-out rows otherwise than the notebook.s model \(values differ by up to 0\.667\)",
    ):
        check_served_answers(drifted, HeldOut(x, np.zeros(5), np.full((5, 3), 1 / 3)))


def test_a_model_source_swaps_atomically_and_remembers_refusals() -> None:
    from service.models.source import ModelSource

    class Fixed:
        def __init__(self, version: str) -> None:
            self.name, self.version, self.contract = "m", version, classifier()

        def predict(self, rows: np.ndarray) -> np.ndarray:
            return np.full((len(rows), 3), 1 / 3)

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
