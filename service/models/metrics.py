"""Scores on held-out rows, by task: the figures the notebook logs and the gate compares.

Hand-written rather than `mlflow.models.evaluate`: on static predictions MLflow's evaluator gets labels only (no
log-loss, which needs the probabilities), and it costs seconds a run for artifacts the run does not need (measured
in docs/benchmarks/pipeline.md). In NumPy, as scikit-learn defines them (tests/unit/test_metrics.py compares): a
follower of the alias scores each new version in the API and the worker, whose image has no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.models.contract import ModelContract, Output, Outputs

# Every metric a run can log, and whether higher is better: the gate's direction comes from here. A model of
# several outputs logs each output's under its name: `species/test_accuracy`.
HIGHER_IS_BETTER = {
    "test_accuracy": True,
    "test_macro_f1": True,
    "test_log_loss": False,
    "test_micro_f1": True,
    "test_subset_accuracy": True,
    "test_hamming_loss": False,
    "test_rmse": False,
    "test_mae": False,
    "test_r2": True,
}
DEFAULT_GATE_METRIC = {
    "classification": "test_accuracy",
    "multilabel": "test_micro_f1",
    "regression": "test_rmse",
}


def base_metric(name: str) -> str:
    """`species/test_accuracy` -> `test_accuracy`."""
    return name.rsplit("/", 1)[-1]


def is_metric(name: str) -> bool:
    return base_metric(name) in HIGHER_IS_BETTER


def higher_is_better(name: str) -> bool:
    return HIGHER_IS_BETTER[base_metric(name)]


def default_gate_metric(contract: ModelContract) -> str:
    """The first output's task's metric (under its name when the model answers several outputs)."""
    return metric_name(contract, contract.output, DEFAULT_GATE_METRIC[contract.task])


def metric_name(contract: ModelContract, output: Output, metric: str) -> str:
    return metric if contract.single_output else f"{output.name}/{metric}"


def score(contract: ModelContract, outputs: Outputs, targets: Any) -> dict[str, float]:
    """Every output's scores on the held-out rows; `targets` one array for a model of one output, else a dict
    of them by output name."""
    named = targets if isinstance(targets, Mapping) else {contract.output.name: targets}
    return {
        metric_name(contract, output, key): value
        for output in contract.outputs
        for key, value in score_output(output, outputs[output.name], named[output.name]).items()
    }


def score_output(output: Output, values: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    if output.task == "classification":
        probabilities = output.probabilities(values)
        labels = probabilities.argmax(axis=1)
        truth = class_targets(output, targets)
        return {
            "test_accuracy": float(np.mean(truth == labels)),
            "test_macro_f1": _macro_f1(truth, labels),
            "test_log_loss": _log_loss(truth, np.clip(probabilities, 1e-7, 1)),
        }
    if output.task == "multilabel":
        truth = np.asarray(targets).reshape(len(targets), -1).astype(bool)
        on = output.labels(values)
        probabilities = np.clip(np.asarray(values, dtype=np.float64), 1e-7, 1 - 1e-7)
        both = np.sum(truth & on)
        return {
            "test_micro_f1": float(2 * both / max(1, np.sum(truth) + np.sum(on))),
            "test_subset_accuracy": float(np.mean(np.all(truth == on, axis=1))),
            "test_hamming_loss": float(np.mean(truth != on)),
            "test_log_loss": float(
                -np.mean(np.where(truth, np.log(probabilities), np.log(1 - probabilities)))
            ),
        }
    predicted = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
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


def class_targets(output: Output, targets: np.ndarray) -> np.ndarray:
    """Integer class labels from labels or one-hot rows."""
    targets = np.asarray(targets)
    if targets.ndim == 2 and targets.shape[1] == output.n_classes and targets.shape[1] > 1:
        targets = targets.argmax(axis=1)
    return targets.reshape(len(targets)).astype(np.int64)


# The second figure that decides between versions whose gate metric ties: a metric of the same task that still
# tells them apart when both are right on the same rows (accuracy on a few hundred rows ties often; log-loss
# says which is the surer of its answers), in its own direction.
TIE_BREAKER = {
    "test_accuracy": "test_log_loss",
    "test_macro_f1": "test_log_loss",
    "test_log_loss": "test_accuracy",
    "test_micro_f1": "test_log_loss",
    "test_subset_accuracy": "test_log_loss",
    "test_hamming_loss": "test_log_loss",
    "test_rmse": "test_mae",
    "test_mae": "test_rmse",
    "test_r2": "test_rmse",
}
EQUAL = 1e-12  # scores closer than this are the same figure (computed on the same rows)


def tie_breaker(metric: str) -> str | None:
    """The tie-breaker of `metric`, for the same output (`species/test_accuracy` -> `species/test_log_loss`)."""
    breaker = TIE_BREAKER.get(base_metric(metric))
    prefix = metric[: -len(base_metric(metric))]
    return prefix + breaker if breaker else None


def gain(metric: str, candidate: float, champion: float) -> float:
    """How much better `candidate` is than `champion` on `metric`, in its units (negative: worse)."""
    return candidate - champion if higher_is_better(metric) else champion - candidate


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
