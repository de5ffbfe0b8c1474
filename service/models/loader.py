"""Load an MLflow model for serving: its lean form where proven equal (service.models.lean), else a compiled
TensorFlow graph for Keras models, MLflow pyfunc for any other flavour.

Independent of BentoML: the API and the job worker load the packaged model's folder, and a follower of the
registry's alias each new version's (service.models.source), all through `load_model_dir`; each gets the model's
contract (service.models.contract), `predict(rows by input name) -> outputs by output name` and the name and
version that answer. Keras `model.predict()`, which MLflow pyfunc calls, has a large fixed cost a call; a
graph over the model does not (DESIGN.md, "Facts that shape the code").
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.models import reference
from service.models.contract import STRING, ContractError, ModelContract, Outputs, Rows, read_contract
from service.models.lean import (
    LEAN_FILE,
    ONNX_RUNTIME,
    TENSORFLOW,
    lean_entry,
    onnx_predict,
    tensorflow_installed,
)
from service.models.mlmodel import MLmodel
from service.models.quiet import quiet, quiet_keras

Predict = Callable[[Rows], Outputs]
CODE_KEY = "code"  # a flavor's folder of Python modules the model needs (custom layers), as MLflow names it


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    flavor: str  # "onnx" (the lean form, ONNX Runtime), "keras" (TensorFlow graph) or "pyfunc"
    contract: ModelContract
    predict: Predict  # rows by input name -> outputs by output name
    reference: dict[str, Any] | None = (
        None  # its held-out reference (service.models.reference), if logged with one
    )

    @property
    def runtime(self) -> str:
        """What computes the answers, as the startup lines say it."""
        return {"onnx": ONNX_RUNTIME, "keras": TENSORFLOW}.get(self.flavor, "mlflow pyfunc")


def configure_threads(intra_op: int, inter_op: int) -> None:
    """TensorFlow thread pools of this process; 0 lets TensorFlow choose. Only before TensorFlow runs an op."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:  # already initialised in this process (a second model): keep its pools
        pass


def load_model_dir(
    model_dir: Path,
    name: str,
    version: str,
    *,
    runtime: str = TENSORFLOW,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
) -> LoadedModel:
    """Load the MLflow model in `model_dir` (the folder holding `MLmodel`) and warm it up.

    `runtime` is the version's verdict (service.models.lean): ONNX_RUNTIME loads its lean form, and TensorFlow is
    not imported; otherwise a Keras model is served by its TensorFlow graph, where TensorFlow is installed."""
    quiet()
    contract = read_contract(model_dir)
    keras = MLmodel.read(model_dir).flavors.get("keras")
    if runtime == ONNX_RUNTIME and (model_dir / LEAN_FILE).is_file():
        flavor, predict = "onnx", onnx_predict(model_dir, contract, intra_op_threads)
    elif keras is not None and keras.get("keras_backend", "tensorflow") == "tensorflow":
        if not tensorflow_installed():
            raise ContractError(
                f"version {version} is served by TensorFlow ({runtime_reason(model_dir, runtime)}), which this "
                "process does not have: serve it from an image built for it (`python -m pipeline container`)"
            )
        configure_threads(intra_op_threads, inter_op_threads)
        import_model_code(model_dir, keras)
        flavor, predict = "keras", _keras_predict(model_dir, contract)
    elif any(tensor.strings for tensor in contract.inputs):
        raise ContractError("string inputs are served by the Keras flavor's graph only")
    else:
        if importlib.util.find_spec("pandas") is None:  # mlflow.pyfunc imports it; the lean image has none
            raise ContractError(
                f"version {version} is not a Keras model: MLflow's pyfunc serves it, with pandas, which this "
                "process does not have: serve it from an image built for it (`python -m pipeline container`)"
            )
        flavor, predict = "pyfunc", _pyfunc_predict(model_dir, contract)
    # Trace the graph before the first request, and refuse a model whose answers break its own contract.
    contract.check_outputs(predict(zero_rows(contract, 1)), 1)
    return LoadedModel(
        name=name,
        version=version,
        flavor=flavor,
        contract=contract,
        predict=predict,
        reference=reference.load(model_dir),
    )


def runtime_reason(model_dir: Path, runtime: str) -> str:
    """Why a version is not served lean, as briefly as a message can say it."""
    if runtime == ONNX_RUNTIME:
        return "its lean form is missing from its files"
    why = lean_entry(model_dir).get("not_converted")
    return str(why) if why else "its lean form was not proven equal to it"


def zero_rows(contract: ModelContract, n: int) -> Rows:
    """`n` rows of zeros (empty strings for string inputs), to trace and check a model before it serves."""
    return {
        t.name: np.full((n, *t.shape), "", dtype=STRING) if t.strings else np.zeros((n, *t.shape), t.dtype)
        for t in contract.inputs
    }


def import_model_code(model_dir: Path, flavor: dict[str, Any]) -> None:
    """Import the modules the model ships in its code folder (custom layers, losses, activations), so that their
    classes are registered with Keras before it loads the model: Keras imports no module of ours by itself. A
    module of the same name already imported (another version's, in a follower) is dropped first."""
    if not flavor.get(CODE_KEY):
        return
    folder = (model_dir / flavor[CODE_KEY]).resolve()
    sys.path.insert(
        0, str(folder)
    )  # first: this version's modules, even where another version's folder is too
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "__")) or not (
            entry.suffix == ".py" or (entry / "__init__.py").is_file()
        ):
            continue
        name = entry.stem if entry.suffix == ".py" else entry.name
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        module = importlib.import_module(name)
        if not Path(str(module.__file__)).resolve().is_relative_to(folder):
            raise ContractError(f"the model's module {name!r} is shadowed by {module.__file__}: rename it")


def _keras_predict(model_dir: Path, contract: ModelContract) -> Predict:
    """The served graph (service.models.keras_graph) as a concrete function: calling it skips tf.function's
    per-call dispatch (input binding, trace-cache lookup), a large part of a small batch's cost
    (docs/benchmarks/serve.md). It takes the inputs' tensors and answers the outputs' in the contract's order: a
    dict in and out costs each call about 10 us more to bind and pack."""
    import mlflow.keras
    import tensorflow as tf

    from service.models.keras_graph import served_function

    quiet_keras()
    # Serving needs no compile: a loss or metric of the notebook's would only be one more thing to resolve.
    model = mlflow.keras.load_model(str(model_dir), load_model_kwargs={"compile": False})
    graph = served_function(model, contract).get_concrete_function()
    inputs = [(tensor.name, tensor.dtype) for tensor in contract.inputs]
    outputs = [output.name for output in contract.outputs]

    def predict(rows: Rows) -> Outputs:
        answered = graph(*[tf.constant(np.asarray(rows[name], dtype=dtype)) for name, dtype in inputs])
        return {name: values.numpy() for name, values in zip(outputs, answered, strict=True)}

    return predict


def _pyfunc_predict(model_dir: Path, contract: ModelContract) -> Predict:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(model_dir))
    tensor = contract.input
    columns = list(contract.feature_names or ()) if contract.columns else None

    def predict(rows: Rows) -> Outputs:
        values = np.asarray(rows[tensor.name], dtype=tensor.dtype)
        if columns is not None:
            import pandas as pd

            return contract.named_outputs(np.asarray(model.predict(pd.DataFrame(values, columns=columns))))
        return contract.named_outputs(model.predict(values if contract.single_input else dict(rows)))

    return predict
