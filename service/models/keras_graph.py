"""The graph that serves a Keras model: one TensorFlow function over the model, taking its inputs' tensors and
answering its outputs' in the contract's order.

The loader calls it for every request of a TensorFlow-served version; the pipeline converts the same function to
the version's lean form (pipeline/lean.py), so both runtimes answer the same inputs in the same order.
"""

from __future__ import annotations

from typing import Any

from service.models.contract import ModelContract


def served_function(model: Any, contract: ModelContract) -> Any:
    """A `tf.function` with a fixed input signature (the batch dimension unknown, so no retracing per size).

    A model of one input is called with its tensor, unless it takes a dict (a dict-input functional model, or a
    subclassed one written for a dict): tracing tells."""
    import tensorflow as tf

    inputs = [tensor.name for tensor in contract.inputs]
    outputs = [output.name for output in contract.outputs]
    specs = [
        tf.TensorSpec([None, *t.shape], tf.string if t.strings else tf.as_dtype(t.dtype), name=t.name)
        for t in contract.inputs
    ]

    def function(with_dict: bool) -> Any:
        def serve(*tensors: Any) -> list[Any]:
            answered = model(
                dict(zip(inputs, tensors, strict=True)) if with_dict else tensors[0], training=False
            )
            named = contract.named_outputs(answered)
            return [named[name] for name in outputs]

        traced = tf.function(serve, input_signature=specs)
        traced.get_concrete_function()  # traces now: a model that cannot be called so fails here
        return traced

    try:
        return function(with_dict=not contract.single_input)
    except (TypeError, ValueError, KeyError):
        return function(with_dict=True)
