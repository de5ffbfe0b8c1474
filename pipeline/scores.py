"""Which of two figures of a metric is the better model's: the one place that knows a metric's direction.

Higher is better, unless the metric is an error or a loss (by name: `rmse`, `mae`, `mse`, `loss`, `log_loss`,
with or without a `test_` or `val_` prefix). Promotion by hand compares through it; a gate on a lower-is-better
metric can too (it imports nothing of the pipeline's, so any step can).
"""

from __future__ import annotations

LOWER_IS_BETTER = ("rmse", "mae", "mse", "loss", "log_loss")


def better(candidate: float, champion: float, metric: str) -> bool:
    """Whether `candidate` is strictly the better figure of `metric`."""
    name = metric.lower().removeprefix("test_").removeprefix("val_")
    if name.startswith(LOWER_IS_BETTER):
        return candidate < champion
    return candidate > champion
