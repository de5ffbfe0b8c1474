"""Baseline for the pipeline benchmark: the same model trained the same way, without papermill or MLflow.

python tests/benchmarks/plain_train.py EPOCHS LEARNING_RATE BATCH_SIZE HIDDEN_UNITS DROPOUT SEED
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `support`

from support.digits import build_model, fit, load_split

from service.models.quiet import quiet, quiet_keras


def main(argv: list[str]) -> None:
    epochs, learning_rate, batch_size, hidden_units, dropout, seed = argv
    quiet()
    quiet_keras()
    split = load_split()
    model = build_model(int(hidden_units), float(learning_rate), float(dropout), int(seed))
    fit(model, split, int(epochs), int(batch_size))
    accuracy = (model.predict_on_batch(split.x_test).argmax(axis=1) == split.y_test).mean()
    print({"test_accuracy": float(accuracy)})


if __name__ == "__main__":
    main(sys.argv[1:])
