"""The model's lean form, made when it is logged: the graph that serves it with TensorFlow
(service.models.keras_graph), converted to ONNX by tf2onnx, saved in the MLflow model's folder.

Converting here, in the kernel, needs nothing but the model in memory; whether the lean form may answer is decided
after, where the model is served (service.models.check): equal to the Keras model, or TensorFlow keeps it. A
model whose layers ONNX Runtime is known to answer differently is not converted: string layers (split, lowercased
and hashed otherwise than TensorFlow does), lookups of integers (unknown ids). The reason is recorded instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from service.models.contract import ModelContract
from service.models.keras_graph import served_function
from service.models.lean import LEAN_FILE

OPSET = 17  # ONNX Runtime 1.32 runs opsets up to 23; 17 has every operator a Keras model of the zoo needs
NOT_EXACT = ("TextVectorization", "StringLookup", "IntegerLookup", "Hashing", "HashedCrossing")


def convert(model: Any, contract: ModelContract, model_dir: Path) -> dict[str, Any]:
    """Write the lean form into `model_dir` (the MLflow model's folder); what to record of it in its metadata."""
    why = _not_convertible(model, contract)
    if why:
        return {"not_converted": why}
    target = model_dir / LEAN_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        proto = _onnx_of(served_function(model, contract), contract)
    except (
        Exception
    ) as exc:  # an operator tf2onnx cannot map, or one ONNX has not: TensorFlow keeps the model
        return {"not_converted": f"tf2onnx cannot convert it ({type(exc).__name__}: {_first_line(exc)})"}
    target.write_bytes(proto.SerializeToString())
    return {"file": LEAN_FILE, "converter": f"tf2onnx {metadata.version('tf2onnx')}", "opset": OPSET}


def _onnx_of(function: Any, contract: ModelContract) -> Any:
    """The served function as an ONNX model whose inputs and outputs carry the contract's names.

    Frozen first: a layer's state that Keras keeps as a captured tensor rather than a variable (an adapted
    Normalization's mean and variance) would otherwise become an input of the ONNX graph."""
    import onnx
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(
        function.get_concrete_function(), lower_control_flow=False, aggressive_inlining=True
    )
    inputs, outputs = [t.name for t in frozen.inputs], [t.name for t in frozen.outputs]
    with _quiet_converter():
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=inputs, output_names=outputs, opset=OPSET
        )
    names = dict(zip(inputs, [t.name for t in contract.inputs], strict=True))
    names |= dict(zip(outputs, [o.name for o in contract.outputs], strict=True))
    _rename(proto.graph, names)
    onnx.checker.check_model(proto, full_check=True)  # an operator ONNX has not ("Bucketize") fails here
    return proto


def _rename(graph: Any, names: dict[str, str]) -> None:
    for value in [*graph.input, *graph.output]:
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]


@contextmanager
def _quiet_converter() -> Iterator[None]:
    """tf2onnx and TensorFlow's graph tools log every step and each unsupported operator; the reason is returned."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "onnx", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _not_convertible(model: Any, contract: ModelContract) -> str | None:
    strings = [tensor.name for tensor in contract.inputs if tensor.strings]
    if strings:
        return f"string input {strings[0]!r}: ONNX Runtime does not answer string inputs as TensorFlow does"
    layers = sorted(
        {type(layer).__name__ for layer in model._flatten_layers(include_self=False)} & set(NOT_EXACT)
    )
    if layers:
        return f"{layers[0]} layer: ONNX Runtime does not answer it as TensorFlow does for every value"
    return None
