"""The training data: scikit-learn's bundled `load_digits`, split the same way on every run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

# The split is fixed on purpose and independent of the training seed: the champion gate compares models on
# the same held-out rows, whatever seed each model was trained with.
SPLIT_SEED = 20_240_917
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.15
N_FEATURES = 64
N_CLASSES = 10


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def sha256(self) -> str:
        """Content hash of every array of the split: equal hashes mean the same rows in the same roles."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def load_split() -> Split:
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=VALIDATION_FRACTION, random_state=SPLIT_SEED, stratify=y_rest
    )
    return Split(x_train, y_train, x_val, y_val, x_test, y_test)
