"""Scores on held-out rows, by task: the figures the notebook logs and the gate compares.

Hand-written with scikit-learn rather than `mlflow.models.evaluate`: on static predictions MLflow's evaluator gets
labels only (no log-loss, which needs the probabilities), and it costs seconds a run for artifacts the run does
not need (measured in docs/benchmarks/pipeline.md).
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
    from sklearn import metrics

    if contract.task == "classification":
        probabilities = contract.probabilities(outputs)
        labels = probabilities.argmax(axis=1)
        truth = class_targets(contract, targets)
        return {
            "test_accuracy": float(metrics.accuracy_score(truth, labels)),
            "test_macro_f1": float(metrics.f1_score(truth, labels, average="macro")),
            "test_log_loss": float(
                metrics.log_loss(truth, np.clip(probabilities, 1e-7, 1), labels=range(probabilities.shape[1]))
            ),
        }
    predicted = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    truth = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    return {
        "test_rmse": float(np.sqrt(metrics.mean_squared_error(truth, predicted))),
        "test_mae": float(metrics.mean_absolute_error(truth, predicted)),
        "test_r2": float(metrics.r2_score(truth, predicted)),
    }


def class_targets(contract: ModelContract, targets: np.ndarray) -> np.ndarray:
    """Integer class labels from labels or one-hot rows."""
    targets = np.asarray(targets)
    if targets.ndim == 2 and targets.shape[1] == contract.n_classes and targets.shape[1] > 1:
        targets = targets.argmax(axis=1)
    return targets.reshape(len(targets)).astype(np.int64)


def better(metric: str, candidate: float, champion: float, margin: float = 0.0) -> bool:
    """Whether `candidate` beats `champion` on `metric` by at least `margin` (and strictly)."""
    gain = candidate - champion if HIGHER_IS_BETTER[metric] else champion - candidate
    return gain > 0 and gain >= margin
