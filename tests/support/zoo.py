"""A model zoo: one small Keras model of each form people bring, built as a notebook builds it, with what the
notebook hands to `pipeline.notebook.log_model`. No real training: made-up rows, a preprocessing layer adapted on
them, a couple of optimizer steps where a layer's state only moves in training (BatchNormalization).

tests/integration/test_model_zoo.py takes every form through logging, the check where served (one fresh process
for all of them), the served predictor and the Open Inference Protocol; a new form people write is one more row
of FORMS. A form the pipeline refuses is a row too, with the message a person gets.

Custom code lives where a person's does: in modules beside the notebook (written by `write_code` into the folder
that plays the notebook's): `zoo_code.py`, which `log_model` ships with the model, and `zoo_scaled.py`, whose layer
needs `zoo_factor.py` beside it, a module the model's config never names, so it does not ship.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

CODE_MODULE = "zoo_code"
CODE = '''"""The zoo's own layers, activation and model, beside the notebook as a person keeps them."""

import keras


@keras.saving.register_keras_serializable(package="zoo")
def scaled_tanh(x):
    return 1.5 * keras.ops.tanh(x)


@keras.saving.register_keras_serializable(package="zoo")
class Doubled(keras.layers.Layer):
    def call(self, inputs):
        return 2.0 * inputs


class Unregistered(keras.layers.Layer):  # no register_keras_serializable: Keras could not load it by name
    def call(self, inputs):
        return inputs + 1.0


@keras.saving.register_keras_serializable(package="zoo")
class TwoLayers(keras.Model):
    def __init__(self, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.scale = keras.layers.Normalization()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.answer = keras.layers.Dense(classes, activation="softmax")

    def call(self, inputs):
        return self.answer(self.hidden(self.scale(inputs)))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}
'''

SCALED_MODULE, FACTOR_MODULE = "zoo_scaled", "zoo_factor"
SCALED = f'''"""A layer whose module imports another module beside the notebook: {FACTOR_MODULE} is not the model's code."""

import keras
from {FACTOR_MODULE} import FACTOR


@keras.saving.register_keras_serializable(package="zoo")
class Scaled(keras.layers.Layer):
    def call(self, inputs):
        return FACTOR * inputs
'''
MODULES = {CODE_MODULE: CODE, SCALED_MODULE: SCALED, FACTOR_MODULE: "FACTOR = 2.0\n"}

ROWS = 12  # held-out rows a form hands over


@dataclass(frozen=True)
class Notebook:
    """A trained model and what its notebook hands to `log_model`."""

    model: Any
    task: Any
    x_test: Any  # as the notebook has them: an array, or a dict of arrays by input name
    y_test: Any
    options: dict[str, Any] = field(
        default_factory=dict
    )  # class_names, feature_names, value_names, threshold

    def log(self) -> dict[str, float]:
        from pipeline import notebook

        return notebook.log_model(
            self.model, task=self.task, x_test=self.x_test, y_test=self.y_test, **self.options
        )

    def answers(self) -> Any:
        """The model's own answers for the held-out rows, as Keras gives them (an array, a list or a dict)."""
        return self.model.predict_on_batch(self.x_test)


@dataclass(frozen=True)
class Form:
    id: str
    build: Callable[[ModuleType], Notebook]  # given the module beside the notebook
    refused: str | None = None  # a form log_model refuses: what it says (a regular expression)
    refused_where_served: str | None = None  # logged, but the check where served refuses it: why (a regex)
    keeps_tensorflow: str | None = None  # served by TensorFlow, not its lean form: why (a regex); else lean


def write_code(folder: Path) -> ModuleType:
    """The modules beside the notebook, written into `folder` and imported from there (`folder` on sys.path, as a
    notebook's own folder is for its kernel); returns `zoo_code`."""
    folder.mkdir(parents=True, exist_ok=True)
    for module, source in MODULES.items():
        (folder / f"{module}.py").write_text(source)
        sys.modules.pop(module, None)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(CODE_MODULE)


def _numbers(columns: int | tuple[int, ...], seed: int, n: int = ROWS) -> np.ndarray:
    shape = (columns,) if isinstance(columns, int) else columns
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def _classes(k: int, seed: int, n: int = ROWS) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def _layers() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras, keras.layers


# --- Sequential: Keras's getting-started model, in every way notebooks start one ---


def sequential_input_first(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    model = keras.Sequential(
        [keras.Input(shape=(6,)), layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")]
    )
    return Notebook(model, "classification", _numbers(6, 1), _classes(3, 1), {"class_names": ["a", "b", "c"]})


def sequential_adapted_normalization(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    x = _numbers(4, 2, n=64) * np.array([1, 10, 100, 1000], np.float32) + 50
    norm = layers.Normalization()
    norm.adapt(x)  # before it is added, on the training rows
    model = keras.Sequential([keras.Input(shape=(4,)), norm, layers.Dense(3, activation="softmax")])
    return Notebook(model, "classification", x[:ROWS], _classes(3, 2))


def sequential_built_by_fit(code: ModuleType) -> Notebook:
    """No keras.Input: the first fit builds it, from the rows' shape."""
    keras, layers = _layers()
    x, y = _numbers(4, 3, n=32), _classes(2, 3, n=32)
    norm = layers.Normalization()
    norm.adapt(x)
    model = keras.Sequential([norm, layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return Notebook(model, "classification", x[:ROWS], y[:ROWS])


def sequential_dropout_batchnorm(code: ModuleType) -> Notebook:
    """Answers in inference mode: Dropout off, BatchNormalization on its moving statistics (moved by two steps)."""
    keras, layers = _layers()
    x, y = _numbers(5, 4, n=32) * 3 + 1, _classes(2, 4, n=32)
    model = keras.Sequential(
        [
            keras.Input(shape=(5,)),
            layers.BatchNormalization(),
            layers.Dense(8, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return Notebook(model, "classification", x[:ROWS], y[:ROWS], {"class_names": ["no", "yes"]})


def sequential_custom_activation(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    model = keras.Sequential(
        [
            keras.Input(shape=(4,)),
            layers.Dense(6, activation=code.scaled_tanh),
            layers.Dense(2, activation="softmax"),
        ]
    )
    return Notebook(model, "classification", _numbers(4, 5), _classes(2, 5))


def sequential_custom_layer(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    model = keras.Sequential([keras.Input(shape=(4,)), code.Doubled(), layers.Dense(3, activation="softmax")])
    return Notebook(model, "classification", _numbers(4, 6), _classes(3, 6))


def sequential_unregistered_layer(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    model = keras.Sequential(
        [keras.Input(shape=(4,)), code.Unregistered(), layers.Dense(3, activation="softmax")]
    )
    return Notebook(model, "classification", _numbers(4, 7), _classes(3, 7))


def sequential_never_built(code: ModuleType) -> Notebook:
    """Neither keras.Input nor a call: Keras knows no input shape to read."""
    keras, layers = _layers()
    model = keras.Sequential([layers.Dense(3, activation="softmax")])
    return Notebook(model, "classification", _numbers(4, 8), _classes(3, 8))


def sequential_needs_an_unshipped_module(code: ModuleType) -> Notebook:
    """Its layer's module ships; the module that one imports in turn does not. The notebook's folder has both,
    so it trains and logs; the check where served, in an empty folder, cannot load it."""
    keras, layers = _layers()
    scaled = importlib.import_module(SCALED_MODULE)
    model = keras.Sequential(
        [keras.Input(shape=(4,)), scaled.Scaled(), layers.Dense(3, activation="softmax")]
    )
    return Notebook(model, "classification", _numbers(4, 30), _classes(3, 30))


# --- functional: one tensor, lists and dicts of them ---


def functional_single(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    inputs = keras.Input(shape=(5,), name="measurements")
    outputs = layers.Dense(3, activation="softmax", name="species")(
        layers.Dense(8, activation="relu")(inputs)
    )
    names = {"feature_names": ["a", "b", "c", "d", "e"], "class_names": ["x", "y", "z"]}
    return Notebook(keras.Model(inputs, outputs), "classification", _numbers(5, 9), _classes(3, 9), names)


def functional_layer_in_a_cell(code: ModuleType) -> Notebook:
    """A layer class written in a notebook cell (registered, as a person would): its module is the kernel's
    `__main__`, which no service can import."""
    keras, layers = _layers()

    @keras.saving.register_keras_serializable(package="cell")
    class Tripled(layers.Layer):
        def call(self, inputs):
            return 3.0 * inputs

    Tripled.__module__, Tripled.__qualname__ = "__main__", "Tripled"  # what a class defined in a cell has
    inputs = keras.Input(shape=(4,), name="measurements")
    outputs = layers.Dense(3, activation="softmax")(Tripled()(inputs))
    return Notebook(keras.Model(inputs, outputs), "classification", _numbers(4, 31), _classes(3, 31))


def functional_linear_classifier(code: ModuleType) -> Notebook:
    """Declared a classifier, but its output is linear (no softmax): not probabilities."""
    keras, layers = _layers()
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, layers.Dense(3)(inputs))
    return Notebook(model, "classification", _numbers(4, 32) * 10, _classes(3, 32))


def functional_lists(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    a, b = keras.Input(shape=(3,), name="a"), keras.Input(shape=(2,), name="b")
    hidden = layers.Dense(6, activation="relu")(layers.Concatenate()([a, b]))
    kind = layers.Dense(2, activation="softmax", name="kind")(hidden)
    size = layers.Dense(1, name="size")(hidden)
    model = keras.Model([a, b], [kind, size])
    x = {"a": _numbers(3, 10), "b": _numbers(2, 11)}
    y = {"kind": _classes(2, 10), "size": _numbers(1, 12)[:, 0]}
    return Notebook(model, {"kind": "classification", "size": "regression"}, x, y)


def functional_dicts_two_heads(code: ModuleType) -> Notebook:
    """A dict of inputs; two heads, a classifier and a regressor, as a dict of outputs."""
    keras, layers = _layers()
    inputs = {
        "numbers": keras.Input(shape=(3,), name="numbers"),
        "flag": keras.Input(shape=(1,), name="flag"),
    }
    hidden = layers.Dense(6, activation="relu")(layers.Concatenate()([inputs["numbers"], inputs["flag"]]))
    outputs = {"label": layers.Dense(3, activation="softmax")(hidden), "score": layers.Dense(1)(hidden)}
    model = keras.Model(inputs, outputs)
    x = {"numbers": _numbers(3, 13), "flag": (_numbers(1, 14) > 0).astype(np.float32)}
    y = {"label": _classes(3, 13), "score": _numbers(1, 15)[:, 0]}
    names = {"class_names": {"label": ["low", "mid", "high"]}}
    return Notebook(model, {"label": "classification", "score": "regression"}, x, y, names)


def subclassed_in_module(code: ModuleType) -> Notebook:
    """No input layer: its contract is read from the rows it is handed and what it answers."""
    model = code.TwoLayers()
    x = _numbers(4, 16, n=32) * 5
    model.scale.adapt(x)
    return Notebook(model, "classification", x[:ROWS], _classes(3, 16))


# --- the shipped examples' forms ---


def text_vectorization(code: ModuleType) -> Notebook:
    """A scalar string a row into TextVectorization (the text tutorial's form), one sigmoid, labels as strings."""
    keras, layers = _layers()
    words = np.array(["cheap", "offer", "meeting", "tomorrow", "win", "lunch", "prize", "report"])
    rng = np.random.default_rng(17)
    texts = np.array([" ".join(rng.choice(words, 4)) for _ in range(40)], dtype=object)
    vectorize = layers.TextVectorization(max_tokens=12, output_sequence_length=5)
    vectorize.adapt(texts)
    inputs = keras.Input(shape=(), dtype="string", name="text")
    pooled = layers.GlobalAveragePooling1D()(layers.Embedding(12, 4)(vectorize(inputs)))
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(pooled))
    labels = np.where(np.arange(ROWS) % 3 == 0, "spam", "ham")
    return Notebook(model, "classification", texts[:ROWS], labels, {"class_names": ["ham", "spam"]})


def string_lookup_columns(code: ModuleType) -> Notebook:
    """One input per column, as Keras's structured-data tutorials build them: a string through StringLookup."""
    keras, layers = _layers()
    region = keras.Input(shape=(1,), dtype="string", name="region")
    age = keras.Input(shape=(1,), name="age")
    regions = ["north", "south", "east"]
    one_hot = layers.StringLookup(vocabulary=regions, output_mode="one_hot")(region)
    outputs = layers.Dense(2, activation="softmax")(layers.Concatenate()([one_hot, age]))
    model = keras.Model({"region": region, "age": age}, outputs)
    column = np.array([[regions[i % 3] if i % 5 else "west"] for i in range(ROWS)], dtype=object)
    return Notebook(model, "classification", {"region": column, "age": _numbers(1, 18)}, _classes(2, 18))


def integer_lookup_ids(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    ids = keras.Input(shape=(1,), dtype="int64", name="user_id")
    looked_up = layers.IntegerLookup(vocabulary=[3, 7, 11, 42])(ids)
    embedded = layers.Flatten()(layers.Embedding(5, 3)(looked_up))
    model = keras.Model(ids, layers.Dense(1)(embedded))
    x = np.array([[3, 7, 11, 42, 99, 3, 7, 11, 42, 5, 3, 7]], dtype=np.int64).T  # 99, 5: out of vocabulary
    return Notebook(model, "regression", x, _numbers(1, 19)[:, 0])


def hashing(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    city = keras.Input(shape=(1,), dtype="string", name="city")
    one_hot = layers.Hashing(num_bins=8, output_mode="one_hot")(city)
    model = keras.Model(city, layers.Dense(3, activation="softmax")(one_hot))
    cities = np.array([[f"city-{i % 7}"] for i in range(ROWS)], dtype=object)
    return Notebook(model, "classification", cities, _classes(3, 20))


def discretization(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    amount = keras.Input(shape=(1,), name="amount")
    bins = layers.Discretization(bin_boundaries=[0.0, 1.0, 10.0], output_mode="one_hot")(amount)
    model = keras.Model(amount, layers.Dense(1, activation="sigmoid")(bins))
    return Notebook(model, "classification", _numbers(1, 21) * 8, _classes(2, 21))


def image_beside_numbers(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    image, meta = keras.Input(shape=(8, 8, 1), name="image"), keras.Input(shape=(2,), name="meta")
    seen = layers.Flatten()(layers.Conv2D(2, 3, activation="relu")(image))
    outputs = layers.Dense(3, activation="softmax")(layers.Concatenate()([seen, meta]))
    model = keras.Model({"image": image, "meta": meta}, outputs)
    x = {"image": _numbers((8, 8, 1), 22), "meta": _numbers(2, 23)}
    return Notebook(model, "classification", x, _classes(3, 22))


def lstm_windows(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    window = keras.Input(shape=(20, 3), name="window")
    model = keras.Model(window, layers.Dense(1)(layers.LSTM(4)(window)))
    return Notebook(model, "regression", _numbers((20, 3), 24), _numbers(1, 25)[:, 0])


def bidirectional_lstm(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    window = keras.Input(shape=(12, 3), name="window")
    seen = layers.Bidirectional(layers.LSTM(4))(window)
    model = keras.Model(window, layers.Dense(3, activation="softmax")(seen))
    return Notebook(model, "classification", _numbers((12, 3), 30), _classes(3, 30))


def multilabel(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    inputs = keras.Input(shape=(5,), name="features")
    model = keras.Model(inputs, layers.Dense(3, activation="sigmoid", name="colours")(inputs))
    on = (_numbers(3, 27) > 0).astype(np.int64)
    names = {"class_names": ["red", "green", "blue"], "threshold": 0.4}
    return Notebook(model, "multilabel", _numbers(5, 26), on, names)


def regression(code: ModuleType) -> Notebook:
    keras, layers = _layers()
    inputs = keras.Input(shape=(4,), name="x")
    model = keras.Model(inputs, layers.Dense(2, name="bounds")(layers.Dense(6, activation="relu")(inputs)))
    return Notebook(model, "regression", _numbers(4, 28), _numbers(2, 29), {"value_names": ["low", "high"]})


FORMS = [
    Form("sequential_input_first", sequential_input_first),
    Form("sequential_adapted_normalization", sequential_adapted_normalization),
    Form("sequential_built_by_fit", sequential_built_by_fit),
    Form("sequential_dropout_batchnorm", sequential_dropout_batchnorm),
    Form("sequential_custom_activation", sequential_custom_activation),
    Form("sequential_custom_layer", sequential_custom_layer),
    Form(
        "sequential_unregistered_layer",
        sequential_unregistered_layer,
        refused=r"class 'Unregistered' \(zoo_code\) is not registered with Keras: decorate it with "
        r"@keras\.saving\.register_keras_serializable",
    ),
    Form(
        "sequential_never_built",
        sequential_never_built,
        refused=r"^the Sequential model has no known input shape: start it with keras\.Input\(shape=\.\.\.\)",
    ),
    Form(
        "sequential_needs_an_unshipped_module",
        sequential_needs_an_unshipped_module,
        refused_where_served=rf"ModuleNotFoundError: No module named '{FACTOR_MODULE}'",
    ),
    Form("functional_single", functional_single),
    Form(
        "functional_layer_in_a_cell",
        functional_layer_in_a_cell,
        refused=r"^class 'Tripled' is defined in the notebook itself; move it to a module beside the notebook",
    ),
    Form(
        "functional_linear_classifier",
        functional_linear_classifier,
        refused=r"^output 'outputs': a classification output answers probabilities in \[0, 1\]|must sum to 1",
    ),
    Form("functional_lists", functional_lists),
    Form("functional_dicts_two_heads", functional_dicts_two_heads),
    Form("subclassed_in_module", subclassed_in_module),
    Form("text_vectorization", text_vectorization, keeps_tensorflow=r"no lean form: string input 'text'"),
    Form(
        "string_lookup_columns",
        string_lookup_columns,
        keeps_tensorflow=r"no lean form: string input 'region'",
    ),
    Form("integer_lookup_ids", integer_lookup_ids, keeps_tensorflow=r"no lean form: IntegerLookup layer"),
    Form("hashing", hashing, keeps_tensorflow=r"no lean form: string input 'city'"),
    Form(
        "discretization",
        discretization,
        keeps_tensorflow=r"no lean form: tf2onnx cannot convert it .*Bucketize",
    ),
    Form("image_beside_numbers", image_beside_numbers),
    Form("lstm_windows", lstm_windows),
    Form("bidirectional_lstm", bidirectional_lstm),
    Form("multilabel", multilabel),
    Form("regression", regression),
]
