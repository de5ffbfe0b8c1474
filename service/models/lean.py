"""A version's lean form: its Keras graph converted to ONNX when it was logged (pipeline/lean.py), served by ONNX
Runtime, so that a process serving it never imports TensorFlow (tens of MB a worker instead of hundreds).

Which runtime answers a version is decided once, before it is registered: the check where the model is served
(service.models.check) proves the lean form equal to the Keras model on the version's held-out rows and edge rows,
and the pipeline tags the run and the version with the verdict (`nbship.runtime`, `nbship.runtime_reason`). Every
place that loads a version (packaged, followed, checked) reads it from the version's lineage. A version with no
verdict (logged and registered by hand) is served by TensorFlow.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from service.models.contract import ModelContract, Outputs, Rows

LEAN_KEY = (
    "nbship_lean"  # the MLmodel metadata entry: {"file": ..., "converter": ...} or {"not_converted": why}
)
LEAN_FILE = "lean/model.onnx"  # in the MLflow model's folder
ONNX_RUNTIME, TENSORFLOW = "onnxruntime", "tensorflow"


def runtime_to_serve(verdict: str | None, setting: str = "auto") -> str:
    """The runtime a process serves a version with: its verdict, unless SERVE_RUNTIME=tensorflow says otherwise;
    TensorFlow for a version without one."""
    return TENSORFLOW if setting == TENSORFLOW or not verdict else verdict


def tensorflow_installed() -> bool:
    """Whether this process could load a TensorFlow-served version (a lean image has no TensorFlow)."""
    return importlib.util.find_spec("tensorflow") is not None


def lean_entry(model_dir: Path) -> dict[str, Any]:
    """What logging recorded of the model's lean form: its file, or why there is none."""
    from service.models.mlmodel import MLmodel

    entry = MLmodel.read(model_dir).metadata.get(LEAN_KEY)
    return entry if isinstance(entry, dict) else {"not_converted": "logged without a lean form"}


def onnx_session(path: Path, intra_op_threads: int = 1) -> Any:
    """An ONNX Runtime session with explicit threads, as TensorFlow's are set per worker: one worker, one core."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Idle pool threads would spin waiting for work, taking CPU from the HTTP stack beside them.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_predict(
    model_dir: Path, contract: ModelContract, intra_op_threads: int = 1
) -> Callable[[Rows], Outputs]:
    """`predict` over the lean form: inputs fed and outputs asked by the contract's names (pipeline/lean.py gives
    them those)."""
    session = onnx_session(model_dir / LEAN_FILE, intra_op_threads)
    inputs = [(tensor.name, tensor.dtype) for tensor in contract.inputs]
    outputs = [output.name for output in contract.outputs]
    takes = sorted(tensor.name for tensor in session.get_inputs())
    answers = sorted(tensor.name for tensor in session.get_outputs())
    if takes != sorted(name for name, _ in inputs) or answers != sorted(outputs):
        raise ValueError(f"the lean form takes {takes} and answers {answers}; the contract names others")
    run = session.run

    def predict(rows: Rows) -> Outputs:
        answered = run(outputs, {name: np.asarray(rows[name], dtype=dtype) for name, dtype in inputs})
        return dict(zip(outputs, answered, strict=True))

    return predict
