"""The run's figures as PNG files: training curves, and the held-out rows' confusion matrix (classifiers) or
predicted against true values (regressors)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no screen on servers and CI
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: dict[str, list[float]], path: Path) -> Path:
    """One panel per metric Keras recorded (loss first), training and validation together."""
    plt = pyplot()
    keys = [key for key in history if not key.startswith("val_")]
    keys.sort(key=lambda key: key != "loss")
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for key, ax in zip(keys, axes[0], strict=True):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    plt = pyplot()
    size = max(5.0, 0.5 * len(class_names) + 3)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(len(class_names)), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), labels=class_names)
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=ax)
    ax.set_title("test confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def predicted_vs_true_png(predicted: np.ndarray, truth: np.ndarray, path: Path) -> Path:
    """One panel per output (the first four), with the diagonal a perfect model would lie on."""
    plt = pyplot()
    predicted = np.asarray(predicted, dtype=np.float64).reshape(len(predicted), -1)
    truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
    outputs = min(predicted.shape[1], 4)
    fig, axes = plt.subplots(1, outputs, figsize=(5 * outputs, 5), squeeze=False)
    for index, ax in enumerate(axes[0]):
        ax.scatter(truth[:, index], predicted[:, index], s=10, alpha=0.6)
        low = min(truth[:, index].min(), predicted[:, index].min())
        high = max(truth[:, index].max(), predicted[:, index].max())
        ax.plot([low, high], [low, high], color="grey", linestyle="--")
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.set_title("test rows" if outputs == 1 else f"test rows, output {index}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
