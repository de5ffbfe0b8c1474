"""Scores of a classifier on held-out rows: the figures the notebook logs and the gate compares."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from pipeline.data import N_CLASSES

METRIC_NAMES = ("test_accuracy", "test_macro_f1")


def score(probabilities: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    y_pred = np.asarray(probabilities).argmax(axis=1)
    return {
        "test_accuracy": float(accuracy_score(y_true, y_pred)),
        "test_macro_f1": float(f1_score(y_true, y_pred, average="macro")),
    }


def confusion(probabilities: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    y_pred = np.asarray(probabilities).argmax(axis=1)
    return confusion_matrix(y_true, y_pred, labels=list(range(N_CLASSES)))
