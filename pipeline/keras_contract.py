"""A Keras model's contract, read off the model itself: its named input and output tensors, their dtypes and shapes,
and each output's task as the notebook declares it.

Names are the ones the model is called and answers with: the keys of a dict of inputs or outputs, else the input
layers' names and `model.output_names` (never a tensor's `.name`, a per-session counter). A subclassed model, whose
inputs Keras does not know until it is called, is read from the held-out rows the notebook hands over and what it
answers for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.models.contract import (
    STRING,
    ContractError,
    ModelContract,
    Output,
    Rows,
    Task,
    Tensor,
    show_shape,
)

PerOutput = Any  # one value for a model of one output, or a dict of them by output name


def rows_of(x: Any, names: Sequence[str]) -> Rows:
    """The notebook's held-out rows by input name (one array for a model of one input); strings as objects."""
    if isinstance(x, Mapping):
        named = dict(x)
    elif len(names) == 1:
        named = {names[0]: x}
    else:
        raise ContractError(
            f"the model takes inputs {list(names)}: pass x_test as a dict of arrays by input name"
        )
    rows = {}
    for name, values in named.items():
        array = np.asarray(values)
        rows[str(name)] = array.astype(STRING) if array.dtype.kind in "OUS" else array
    return rows


def feed(model: Any, contract: ModelContract, rows: Rows, named: bool) -> Any:
    """What the model is called with: the tensor for a functional model of one input, else the dict; a
    subclassed model as the notebook handed its rows (`named`: a dict by input name)."""
    structure = _structure(model, "input")
    takes_dict = named if structure is None else isinstance(structure, Mapping)  # None: subclassed
    return rows if takes_dict or not contract.single_input else rows[contract.input.name]


def contract_of(
    model: Any,
    task: Task | Mapping[str, Task],
    x_test: Any,
    class_names: PerOutput = None,
    feature_names: Sequence[str] | None = None,
    value_names: PerOutput = None,
    threshold: PerOutput = None,
) -> ModelContract:
    """The contract of `model`, checked against the held-out rows `x_test`."""
    inputs = _named_tensors(model, "input")
    if inputs is None:  # a subclassed model: read from the rows it is given and what it answers
        rows = rows_of(x_test, list(x_test) if isinstance(x_test, Mapping) else ["inputs"])
        inputs = [Tensor(values.shape[1:], values.dtype, name) for name, values in rows.items()]
    outputs = _named_tensors(model, "output")
    if outputs is None:
        rows = rows_of(x_test, [t.name for t in inputs])
        probe = {name: values[:2] for name, values in rows.items()}
        answered = model.predict_on_batch(
            probe if not isinstance(x_test, np.ndarray) else probe[inputs[0].name]
        )
        named = answered if isinstance(answered, Mapping) else {"outputs": answered}
        outputs = [Tensor(np.asarray(v).shape[1:], np.asarray(v).dtype, str(k)) for k, v in named.items()]
    names = [t.name for t in outputs]
    declared = (
        Output(
            tensor,
            _per_output(task, tensor.name, names, "task"),
            _tuple(_per_output(class_names, tensor.name, names, "class_names")),
            _tuple(_per_output(value_names, tensor.name, names, "value_names")),
            float(_per_output(threshold, tensor.name, names, "threshold") or 0.5),
        )
        for tensor in outputs
    )
    contract = ModelContract(tuple(inputs), tuple(declared), _tuple(feature_names))
    _check_rows(contract, rows_of(x_test, [t.name for t in contract.inputs]))
    return contract


def _structure(model: Any, which: str) -> Any:
    """The model's inputs or outputs as it was built: a tensor, a list, or a dict by name; None for a subclassed
    model, which has no graph to ask.

    Asked of the graph, never of `model.input`/`model.output`: those are a layer's first call, and a `Sequential`
    is never called itself (it builds a functional graph of its layers, `_functional`), so they raise where
    `model.inputs`/`model.outputs` answer. The plural forms are flat lists; the structure the graph was built
    with (`_inputs_struct`, Keras's own for `model.input`) keeps a dict's names. Both are Keras internals: the
    Sequential and dict rows of tests/integration/test_model_zoo.py fail if an upgrade moves them."""
    import keras

    try:
        flat = getattr(model, f"{which}s")
    except AttributeError:
        if isinstance(model, keras.Sequential):
            raise ContractError(
                "the Sequential model has no known input shape: start it with keras.Input(shape=...) so its "
                "contract can be read off the model"
            ) from None
        return None
    graph = model._functional if isinstance(model, keras.Sequential) else model
    return getattr(graph, f"_{which}s_struct", flat)


def _named_tensors(model: Any, which: str) -> list[Tensor] | None:
    """The model's inputs or outputs by name, in their declared order; None for a subclassed model."""
    structure = _structure(model, which)
    if structure is None:
        return None
    if isinstance(structure, Mapping):
        return [_tensor(str(name), tensor) for name, tensor in structure.items()]
    tensors = list(structure) if isinstance(structure, (list, tuple)) else [structure]
    layers = [tensor._keras_history.operation for tensor in tensors]  # the InputLayer, the producing layer
    names = [layer.name for layer in layers]
    if len(tensors) == 1 and _generated(layers[0]):
        # Keras names an unnamed layer by its class and a counter of the session (`dense_3`): not a name to
        # serve by, nor to compare versions by. The one input or output is then `inputs` or `outputs`.
        names = [f"{which}s"]
    return [_tensor(name, tensor) for name, tensor in zip(names, tensors, strict=True)]


def _generated(layer: Any) -> bool:
    """Whether Keras made up the layer's name (its class's, with a counter) rather than the notebook giving one."""
    import re

    from keras.src.utils.naming import to_snake_case

    return re.fullmatch(rf"{re.escape(to_snake_case(type(layer).__name__))}(_\d+)?", layer.name) is not None


def _tensor(name: str, keras_tensor: Any) -> Tensor:
    shape = tuple(keras_tensor.shape)
    if not shape:
        raise ContractError(f"tensor {name!r} is one value, not a batch of rows")
    # The first dimension is the batch. Keras records a size there only when it built the model from a batch (a
    # Sequential without keras.Input, built by its first fit: 32 rows in batches of 16 make it 16); the model
    # answers any number of rows all the same, and the check where served proves it before registering.
    if any(d is None for d in shape[1:]):
        raise ContractError(
            f"tensor {name!r} of shape {shape} has unknown dimensions besides the batch; nbship serves fixed shapes"
        )
    dtype = STRING if str(keras_tensor.dtype) == "string" else np.dtype(str(keras_tensor.dtype))
    return Tensor(tuple(int(d) for d in shape[1:]), dtype, name)


def _per_output(value: Any, name: str, names: Sequence[str], what: str) -> Any:
    """A declaration for one output: the value itself for a model of one output, else the dict's entry."""
    if not isinstance(value, Mapping):
        if len(names) > 1 and value is not None and what in ("task", "class_names", "value_names"):
            raise ContractError(f"the model answers {list(names)}: give {what} as a dict by output name")
        return value
    unknown = [key for key in value if key not in names]
    if unknown:
        raise ContractError(f"{what} names output {unknown[0]!r}; the model answers {list(names)}")
    if what == "task" and name not in value:
        raise ContractError(f"task names no task for output {name!r}")
    return value.get(name)


def _tuple(names: Sequence[Any] | None) -> tuple[str, ...] | None:
    return tuple(str(name) for name in names) if names is not None else None


def _check_rows(contract: ModelContract, rows: Rows) -> None:
    given, taken = sorted(rows), sorted(t.name for t in contract.inputs)
    if given != taken:
        raise ContractError(f"x_test holds inputs {given}; the model takes {taken}")
    for tensor in contract.inputs:
        values = rows[tensor.name]
        if values.shape[1:] != tensor.shape:
            raise ContractError(
                f"x_test {tensor.name!r} has rows of shape {list(values.shape[1:])}; the model takes "
                f"{show_shape(tensor.shape)}"
            )
        if tensor.strings != (values.dtype == STRING) or (
            not tensor.strings and values.dtype.kind not in "iufb"
        ):
            raise ContractError(
                f"x_test {tensor.name!r} holds {values.dtype.name} values; the model takes {tensor}"
            )
