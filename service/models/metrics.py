"""Scores on held-out rows, by task: the figures the notebook logs and the gate compares.

Hand-written rather than `mlflow.models.evaluate`: on static predictions MLflow's evaluator gets labels only (no
log-loss, which needs the probabilities), and it costs seconds a run for artifacts the run does not need (measured
in docs/benchmarks/pipeline.md). In NumPy, as scikit-learn defines them (tests/unit/test_metrics.py compares): a
follower of the alias scores each new version in the API and the worker, whose image has no scikit-learn.
"""

from __future__ import annotations

import numpy as np

from service.models.contract import ModelContract

# Every metric a run can log, and whether higher is better: the gate's direction comes from here.
HIGHER_IS_BETTER = {
    "test_accuracy": True,
    "test_macro_f1": True,
    "test_log_loss": False,
    "test_rmse": False,
    "test_mae": False,
    "test_r2": True,
}
DEFAULT_GATE_METRIC = {"classification": "test_accuracy", "regression": "test_rmse"}


def score(contract: ModelContract, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    if contract.task == "classification":
        probabilities = contract.probabilities(outputs)
        labels = probabilities.argmax(axis=1)
        truth = class_targets(contract, targets)
        return {
            "test_accuracy": float(np.mean(truth == labels)),
            "test_macro_f1": _macro_f1(truth, labels),
            "test_log_loss": _log_loss(truth, np.clip(probabilities, 1e-7, 1)),
        }
    predicted = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    truth = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    errors = truth - predicted
    return {
        "test_rmse": float(np.sqrt(np.mean(errors**2))),
        "test_mae": float(np.mean(np.abs(errors))),
        "test_r2": _r2(truth, errors),
    }


def _macro_f1(truth: np.ndarray, labels: np.ndarray) -> float:
    """The mean over the classes that occur in either of each class's 2 tp / (2 tp + fp + fn)."""
    f1 = [
        2 * np.sum((labels == label) & (truth == label)) / (np.sum(labels == label) + np.sum(truth == label))
        for label in np.union1d(truth, labels)
    ]
    return float(np.mean(f1))


def _log_loss(truth: np.ndarray, probabilities: np.ndarray) -> float:
    eps = np.finfo(probabilities.dtype).eps
    chosen = np.clip(probabilities, eps, 1 - eps)[np.arange(len(truth)), truth]
    return float(-np.mean(np.log(chosen)))


def _r2(truth: np.ndarray, errors: np.ndarray) -> float:
    """The mean over the outputs of 1 - residual / total sum of squares; a constant output scores 1 if predicted
    exactly, else 0."""
    residual = np.sum(errors**2, axis=0)
    total = np.sum((truth - truth.mean(axis=0)) ** 2, axis=0)
    exact = np.where(residual == 0, 1.0, 0.0)
    return float(np.mean(np.where(total == 0, exact, 1 - residual / np.where(total == 0, 1, total))))


def class_targets(contract: ModelContract, targets: np.ndarray) -> np.ndarray:
    """Integer class labels from labels or one-hot rows."""
    targets = np.asarray(targets)
    if targets.ndim == 2 and targets.shape[1] == contract.n_classes and targets.shape[1] > 1:
        targets = targets.argmax(axis=1)
    return targets.reshape(len(targets)).astype(np.int64)


# The second figure that decides between versions whose gate metric ties: a metric of the same task that still
# tells them apart when both are right on the same rows (accuracy on a few hundred rows ties often; log-loss
# says which is the surer of its answers), in its own direction.
TIE_BREAKER = {
    "test_accuracy": "test_log_loss",
    "test_macro_f1": "test_log_loss",
    "test_log_loss": "test_accuracy",
    "test_rmse": "test_mae",
    "test_mae": "test_rmse",
    "test_r2": "test_rmse",
}
EQUAL = 1e-12  # scores closer than this are the same figure (computed on the same rows)


def gain(metric: str, candidate: float, champion: float) -> float:
    """How much better `candidate` is than `champion` on `metric`, in its units (negative: worse)."""
    return candidate - champion if HIGHER_IS_BETTER[metric] else champion - candidate


def better(metric: str, candidate: float, champion: float, margin: float = 0.0) -> bool:
    """Whether `candidate` beats `champion` on `metric` by at least `margin` (and strictly)."""
    won = gain(metric, candidate, champion)
    return won > EQUAL and won >= margin


def ties(metric: str, candidate: float, champion: float, margin: float = 0.0) -> bool:
    """Whether the two are within the margin of each other on `metric` without one beating the other by it (with
    no margin: equal)."""
    return abs(gain(metric, candidate, champion)) <= max(margin, EQUAL) and not better(
        metric, candidate, champion, margin
    )
