"""Tiny untrained Keras models, one of each request form (their contracts are tests/support/models.py FORMS), and
their packaging into the BentoML model store as `python -m pipeline package` leaves a version, without a run, a
registry or training: what a test needs to serve a form in process (tests/fuzz/test_fuzz_forms.py). Each is a row
the model zoo (issue 28) can take over.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from support.models import FORMS


def wine() -> Any:
    """13 named float32 features, a Normalization, softmax over 3 cultivars."""
    import keras

    inputs = keras.Input(shape=(13,), name="measurements")
    scaled = keras.layers.Normalization(mean=np.full(13, 10.0), variance=np.full(13, 100.0))(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="cultivar")(scaled))


def notes() -> Any:
    """Four numbers and a string (a StringLookup), two heads: a classifier and a regressor."""
    import keras

    measurements = keras.Input(shape=(4,), name="measurements")
    note = keras.Input(shape=(), dtype="string", name="note")
    words = keras.layers.StringLookup(vocabulary=["dry", "sweet", "tannic"], output_mode="one_hot")(note)
    hidden = keras.layers.Concatenate()([keras.layers.Rescaling(0.1)(measurements), words])
    cultivar = keras.layers.Dense(3, activation="softmax", name="cultivar")(hidden)
    alcohol = keras.layers.Dense(1, name="alcohol")(hidden)
    return keras.Model(
        {"measurements": measurements, "note": note}, {"cultivar": cultivar, "alcohol": alcohol}
    )


def text() -> Any:
    """A string a row (the text tutorial's form) into a StringLookup, one sigmoid."""
    import keras

    review = keras.Input(shape=(), dtype="string", name="text")
    words = keras.layers.StringLookup(vocabulary=["fine", "dull"], output_mode="one_hot")(review)
    return keras.Model(review, keras.layers.Dense(1, activation="sigmoid", name="positive")(words))


def columns() -> Any:
    """One input a column, as Keras's structured-data tutorials build them: an int32, a string, a float."""
    import keras

    age = keras.Input(shape=(1,), dtype="int32", name="age")
    sex = keras.Input(shape=(1,), dtype="string", name="sex")
    bmi = keras.Input(shape=(1,), name="bmi")
    hidden = keras.layers.Concatenate()(
        [
            keras.layers.Rescaling(0.01)(keras.ops.cast(age, "float32")),
            keras.layers.StringLookup(vocabulary=["f", "m"], output_mode="one_hot")(sex),
            keras.layers.Rescaling(0.01)(bmi),
        ]
    )
    inputs = {"age": age, "sex": sex, "bmi": bmi}
    return keras.Model(inputs, keras.layers.Dense(1, name="progression")(hidden))


BUILDERS: dict[str, Callable[[], Any]] = {"wine": wine, "notes": notes, "text": text, "columns": columns}


def package(form: str, folder: Path) -> str:
    """The form's tiny model saved as an MLflow Keras model with its contract (FORMS) and stored in the BentoML
    model store with a lineage, as packaging stores a registered version; returns its BentoML model tag."""
    import bentoml
    import mlflow

    from service.models.contract import read_contract
    from service.models.lineage import ModelLineage
    from service.serving.packaged import LINEAGE_KEY

    contract = FORMS[form]
    path = folder / form
    mlflow.keras.save_model(
        BUILDERS[form](),
        str(path),
        signature=contract.signature(),
        metadata=contract.metadata(),
        pip_requirements=["keras"],
    )
    assert read_contract(path) == contract, f"the {form} model's contract is not FORMS[{form!r}]"
    lineage = ModelLineage(name=f"tiny-{form}", version="1", alias="champion", run_id="0" * 32)
    stored = bentoml.mlflow.import_model(
        f"tiny-{form}:v1",
        str(path),
        signatures={"predict": {"batchable": True}},
        metadata={LINEAGE_KEY: lineage.model_dump(exclude_none=True)},
    )
    return str(stored.tag)
