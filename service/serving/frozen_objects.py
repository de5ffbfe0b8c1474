"""A loaded worker holds hundreds of thousands of objects (TensorFlow, Keras, MLflow, the model) that live as long
as it does; every full collection of Python's garbage collector walked them all, a stall of every request in
flight (docs/benchmarks/serve.md). Frozen once the worker is ready, they are left out of later collections
(`gc.freeze`, as Instagram's forked workers do)."""

from __future__ import annotations

import gc


def freeze_loaded_objects() -> None:
    """Move every object alive now to the collector's permanent generation (young garbage collected first)."""
    gc.collect(1)
    gc.freeze()
