"""The scores in NumPy (service.models.metrics, which the image runs without scikit-learn) equal scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from service.models.contract import ModelContract, Tensor
from service.models.metrics import score

F32 = np.dtype(np.float32)


def _classifier(k: int) -> ModelContract:
    return ModelContract.single("classification", Tensor((4,), F32, "x"), Tensor((k,), F32, "y"))


@pytest.mark.parametrize("k", [1, 3, 10])
def test_classification_scores_are_scikit_learns(k: int) -> None:
    rng = np.random.default_rng(k)
    contract = _classifier(k)
    if k == 1:  # a sigmoid: p of class 1
        outputs = rng.random((200, 1))
    else:
        outputs = rng.dirichlet(np.ones(k) * 0.3, size=200)  # peaked: some rows near 0 and 1
        outputs[0] = np.eye(k)[0]  # an exact 0 and 1, clipped
    truth = rng.integers(0, max(k, 2), 200)
    truth[:3] = 0  # some classes may never be predicted, others never true
    probabilities = contract.output.probabilities(outputs)
    labels = probabilities.argmax(axis=1)
    expected = {
        "test_accuracy": sk.accuracy_score(truth, labels),
        "test_macro_f1": sk.f1_score(truth, labels, average="macro"),
        "test_log_loss": sk.log_loss(
            truth, np.clip(probabilities, 1e-7, 1), labels=range(probabilities.shape[1])
        ),
    }
    scores = score(contract, {"y": outputs}, truth)
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_macro_f1_counts_a_class_only_predicted() -> None:
    truth, outputs = np.array([0, 0, 1, 1]), np.eye(3)[[0, 2, 1, 1]]
    expected = sk.f1_score(truth, outputs.argmax(axis=1), average="macro")
    assert score(_classifier(3), {"y": outputs}, truth)["test_macro_f1"] == pytest.approx(expected)


@pytest.mark.parametrize("width", [1, 3])
def test_regression_scores_are_scikit_learns(width: int) -> None:
    rng = np.random.default_rng(width)
    contract = ModelContract.single("regression", Tensor((4,), F32, "x"), Tensor((width,), F32, "y"))
    truth = rng.normal(size=(50, width))
    predicted = truth + rng.normal(scale=0.3, size=truth.shape)
    if width == 3:  # a constant output, predicted exactly in one case and not in the other
        truth[:, 1] = 2.0
        predicted[:, 1] = 2.0
        truth[:, 2] = -1.0
    expected = {
        "test_rmse": np.sqrt(sk.mean_squared_error(truth, predicted)),
        "test_mae": sk.mean_absolute_error(truth, predicted),
        "test_r2": sk.r2_score(truth, predicted),
    }
    scores = score(contract, {"y": predicted}, truth)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_multilabel_scores_are_scikit_learns() -> None:
    rng = np.random.default_rng(7)
    contract = ModelContract.single("multilabel", Tensor((4,), F32, "x"), Tensor((3,), F32, "y"))
    outputs = rng.random((100, 3))
    truth = rng.integers(0, 2, (100, 3))
    on = outputs >= 0.5
    scores = score(contract, {"y": outputs}, truth)
    assert scores["test_micro_f1"] == pytest.approx(sk.f1_score(truth, on, average="micro"))
    assert scores["test_subset_accuracy"] == pytest.approx(sk.accuracy_score(truth, on))
    assert scores["test_hamming_loss"] == pytest.approx(sk.hamming_loss(truth, on))
    expected_log_loss = np.mean([sk.log_loss(truth[:, j], outputs[:, j], labels=[0, 1]) for j in range(3)])
    assert scores["test_log_loss"] == pytest.approx(expected_log_loss)
