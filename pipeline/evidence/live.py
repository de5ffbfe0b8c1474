"""Live scores from labelled rows: what the version's answers turned out to be worth, with an interval.

Classifiers: accuracy (multi-label: the share of rows whose every class was right), with Wilson's 95% score
interval, which stays inside [0, 1] and is honest for small counts. Regressions: the mean absolute error with a
normal 95% interval of the mean, and the root mean squared error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.evidence.window import Labelled
from service.models.contract import ModelContract

Z95 = 1.959964


@dataclass(frozen=True)
class LiveScore:
    output: str
    metric: str  # accuracy, or mae
    value: float
    low: float
    high: float
    rows: int  # labelled rows it is computed on
    rmse: float | None = None  # regressions

    def describe(self) -> str:
        extra = f", rmse {self.rmse:.4g}" if self.rmse is not None else ""
        return (
            f"live {self.metric} {self.value:.3f} (95% interval {self.low:.3f} to {self.high:.3f}) on "
            f"{self.rows:,} labelled rows{extra}"
        )


def scores(contract: ModelContract, labelled: list[Labelled]) -> list[LiveScore]:
    found = []
    for output in contract.outputs:
        rows = [row for row in labelled if row.output == output.name]
        if not rows:
            continue
        if output.task == "regression":
            answered = np.array([np.ravel(row.answered["value"]) for row in rows], dtype=np.float64)
            truth = np.array([np.ravel(row.label) for row in rows], dtype=np.float64)
            errors = np.abs(answered - truth).mean(axis=1)
            mae = float(errors.mean())
            half = Z95 * float(errors.std(ddof=1)) / math.sqrt(len(errors)) if len(errors) > 1 else math.inf
            rmse = float(np.sqrt(((answered - truth) ** 2).mean()))
            found.append(
                LiveScore(output.name, "mae", mae, max(0.0, mae - half), mae + half, len(rows), rmse)
            )
            continue
        if output.task == "multilabel":
            right = sum(sorted(row.answered["labels"]) == sorted(row.label) for row in rows)
        else:
            right = sum(row.answered["class"] == row.label for row in rows)
        low, high = wilson(right, len(rows))
        found.append(LiveScore(output.name, "accuracy", right / len(rows), low, high, len(rows)))
    return found


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
