"""Which of two figures is the better one: higher, unless the metric is an error or a loss."""

import pytest

from pipeline.scores import better


@pytest.mark.parametrize(
    ("candidate", "champion", "metric", "expected"),
    [
        (0.99, 0.14, "test_accuracy", True),
        (0.14, 0.99, "test_accuracy", False),
        (0.5, 0.5, "test_macro_f1", False),  # equal is not better
        (0.1, 0.3, "test_rmse", True),
        (0.3, 0.1, "rmse", False),
        (1.0, 2.0, "val_loss", True),
        (1.0, 2.0, "log_loss", True),
        (2.0, 1.0, "mae", False),
        (1.0, 2.0, "test_mse", True),
    ],
)
def test_better(candidate, champion, metric, expected):
    assert better(candidate, champion, metric) is expected
