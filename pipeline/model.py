"""The Keras classifier and its training, shared by the notebook and the benchmark's plain script."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.data import N_CLASSES, N_FEATURES

if TYPE_CHECKING:
    import keras


def build_model(hidden_units: int, learning_rate: float, dropout: float, seed: int) -> keras.Model:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(N_FEATURES,), dtype="float32", name="pixels")
    x = keras.layers.Rescaling(1.0 / 16.0)(inputs)  # load_digits pixels are 0..16
    x = keras.layers.Dense(hidden_units, activation="relu")(x)
    x = keras.layers.Dropout(dropout, seed=seed)(x)
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="digits_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def fit(model: keras.Model, split: Any, epochs: int, batch_size: int, callbacks: list[Any] | None = None):
    return model.fit(
        split.x_train,
        split.y_train,
        validation_data=(split.x_val, split.y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks or [],
        verbose=0,
    )
