"""The bundled digits demo as plain code, for tests and benchmarks: the same data, split and model as
notebooks/train.ipynb (the notebook is the user's; this copy is the tests' fixture and the benchmark's baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SPLIT_SEED = 20_240_917
CLASS_NAMES = [str(digit) for digit in range(10)]


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_split() -> Split:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=SPLIT_SEED, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.15, random_state=SPLIT_SEED, stratify=y_rest
    )
    return Split(x_train, y_train, x_val, y_val, x_test, y_test)


def build_model(hidden_units: int, learning_rate: float, dropout: float, seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(64,), name="pixels")
    hidden = keras.layers.Rescaling(1.0 / 16.0)(inputs)
    hidden = keras.layers.Dense(hidden_units, activation="relu")(hidden)
    hidden = keras.layers.Dropout(dropout, seed=seed)(hidden)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(hidden)
    model = keras.Model(inputs, outputs, name="digits_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def fit(model: Any, split: Split, epochs: int, batch_size: int) -> Any:
    return model.fit(
        split.x_train,
        split.y_train,
        validation_data=(split.x_val, split.y_val),
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
    )


def log_and_register(
    client: Any, settings: Any, model: Any, split: Split, tags: dict[str, str] | None = None
) -> Any:
    """Log `model` with `split`'s held-out rows as a notebook does (pipeline.notebook.log_model), in a run of its
    own on `settings`' store, check it as the pipeline does (service.models.check, here in this process) and
    register it as a new version of `settings.model_name`, tagged with the runtime the check chose."""
    import mlflow

    from pipeline import lineage, notebook, registry, tracking
    from support.checked import runtime_tags

    with mlflow.start_run(experiment_id=tracking.experiment_id(client, settings)) as run:
        if tags:
            mlflow.set_tags(tags)
        notebook.log_model(
            model, task="classification", x_test=split.x_test, y_test=split.y_test, class_names=CLASS_NAMES
        )
    uri = client.get_run(run.info.run_id).data.tags[lineage.MODEL_URI_TAG]
    runtime = runtime_tags(client, run.info.run_id, uri)
    return registry.register(
        client, settings.model_name, uri, run.info.run_id, runtime, "tests/support/digits.py"
    )
