"""Targets as the notebook has them (pipeline.notebook): class labels as indices, one-hot rows, or the labels
themselves ("spam", "ham") mapped through class_names; what cannot be mapped is refused saying what to hand over."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.notebook import _named_targets
from service.models.contract import ContractError, ModelContract, Output, Tensor

F32 = np.dtype(np.float32)


def classifier(k: int, class_names: tuple[str, ...] | None = None) -> ModelContract:
    return ModelContract.single("classification", Tensor((4,), F32, "x"), Tensor((k,), F32, "y"), class_names)


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["spam", "ham", "spam"]),
        np.array(["spam", "ham", "spam"], dtype=object),  # a pandas column of strings
        [b"spam", b"ham", b"spam"],
        np.array([["spam"], ["ham"], ["spam"]]),  # one label a row, as a column
    ],
)
def test_string_labels_are_mapped_through_the_class_names(labels: object) -> None:
    sigmoid = classifier(1, ("ham", "spam"))  # one sigmoid: class 1 is "spam"
    np.testing.assert_array_equal(_named_targets(sigmoid, labels, 3)["y"], [1, 0, 1])


def test_indices_one_hot_rows_and_whole_numbers_stay_as_they_are() -> None:
    contract = classifier(3, ("cat", "dog", "eel"))
    for targets in (
        np.array([2, 0, 1]),
        np.eye(3)[[2, 0, 1]],
        np.array([2.0, 0.0, 1.0]),
        [True, False, True],
    ):
        np.testing.assert_array_equal(_named_targets(contract, targets, 3)["y"], np.asarray(targets))


def test_labels_of_each_output_of_several_by_its_own_class_names() -> None:
    contract = ModelContract(
        (Tensor((4,), F32, "x"),),
        (
            Output(Tensor((2,), F32, "kind"), "classification", ("red", "white")),
            Output(Tensor((1,), F32, "price"), "regression"),
        ),
    )
    named = _named_targets(contract, {"kind": ["white", "red"], "price": [9.5, 12.0]}, 2)
    np.testing.assert_array_equal(named["kind"], [1, 0])
    np.testing.assert_array_equal(named["price"], [9.5, 12.0])


@pytest.mark.parametrize(
    ("contract", "targets", "message"),
    [
        (
            classifier(2),
            ["spam", "ham"],
            "y_test holds labels such as 'spam', not class indices: pass class_names=[...] (the label of each of "
            "the output's 2 classes, in its order) and they are mapped to the classes, or y_test as class "
            "indices 0..1",
        ),
        (
            classifier(2, ("ham", "spam")),
            ["spam", "eggs"],
            "y_test holds label 'eggs', which is not one of class_names ['ham', 'spam']",
        ),
        (
            classifier(3, ("a", "b", "c")),
            [0.5, 1.0],
            "y_test holds label '0.5', which is not one of class_names",
        ),
        (
            ModelContract.single("regression", Tensor((4,), F32, "x"), Tensor((1,), F32, "y")),
            ["high", "low"],
            "y_test holds strings; the targets of a regression output are numbers",
        ),
    ],
)
def test_labels_that_cannot_be_mapped_are_refused_saying_what_to_hand_over(
    contract: ModelContract, targets: list, message: str
) -> None:
    with pytest.raises(ContractError) as refused:
        _named_targets(contract, targets, 2)
    assert str(refused.value).startswith(message), str(refused.value)
