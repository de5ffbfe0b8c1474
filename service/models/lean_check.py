"""Whether a version's lean form may answer for it: equal to its Keras model, where the model is served.

Both answer the same rows: the version's held-out rows; the first of them alone (a batch of one); the held-out rows
repeated to MANY_ROWS (a large batch); a row of zeros; a row of each input's smallest and one of its largest
held-out values (element by element: the edges of the range the model was tested on). Every output is compared by
name, in order, within LEAN_RTOL and LEAN_ATOL; a classifier's class (a multi-label output's set of labels) must
also be the same wherever the Keras model's answer is not a near tie (top two within LEAN_ATOL, or a label's
probability within it of the threshold: there the smallest rounding decides, in either runtime).

The tolerance: float32 arithmetic in another order (another kernel, fused operations) moves a value by a few units
in its last place, 1.2e-7 for a value near 1; across the model zoo (tests/support/zoo.py) the largest difference measured was 1.2e-7.
The bounds stay within two orders of magnitude of that, so a lean form that computes anything else (a layer
dropped, a constant rounded, an activation approximated) is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.models.contract import ModelContract, Outputs, Rows, rows_in
from service.models.lean import LEAN_FILE, ONNX_RUNTIME, TENSORFLOW, lean_entry, onnx_predict

LEAN_RTOL, LEAN_ATOL = 1e-5, 1e-5
HELD_OUT = "held-out rows"
MANY_ROWS = 257  # past any power of two a kernel might specialise on


def lean_runtime(model_dir: Any, keras: Any, held_out: Rows) -> tuple[str, str]:
    """(runtime, reason): ONNX_RUNTIME when the lean form in `model_dir` answers every check row as `keras` (the
    loaded TensorFlow model) does; TENSORFLOW, and why, otherwise."""
    entry = lean_entry(model_dir)
    if "not_converted" in entry:
        return TENSORFLOW, f"no lean form: {entry['not_converted']}"
    try:
        lean = onnx_predict(model_dir, keras.contract)
    except Exception as exc:
        return TENSORFLOW, f"ONNX Runtime cannot load {LEAN_FILE} ({type(exc).__name__}: {str(exc)[:200]})"
    worst = 0.0
    for case, rows in check_rows(keras.contract, held_out).items():
        try:
            ours, theirs = lean(rows), keras.predict(rows)
            differs = lean_differs(keras.contract, ours, theirs)
        except Exception as exc:
            differs = f"ONNX Runtime failed ({type(exc).__name__}: {str(exc)[:200]})"
        if differs:
            return TENSORFLOW, f"its lean form is not equal to it: {case}: {differs}"
        if case == HELD_OUT:  # what the reason reports, from the answers already compared
            worst = max_difference(keras.contract, ours, theirs)
    return ONNX_RUNTIME, (
        f"lean form equal to the Keras model ({entry.get('converter', 'ONNX')}, opset {entry.get('opset')}; "
        f"largest difference {worst:.2g} on the held-out rows)"
    )


def check_rows(contract: ModelContract, held_out: Rows) -> dict[str, Rows]:
    """The rows both runtimes answer, by what they test."""
    n = rows_in(held_out)
    names = [tensor.name for tensor in contract.inputs]
    x = {name: np.asarray(held_out[name]) for name in names}
    return (
        {
            HELD_OUT: x,
            "a batch of one": {name: x[name][:1] for name in names},
            f"a batch of {MANY_ROWS}": {
                name: np.resize(x[name], (MANY_ROWS, *x[name].shape[1:])) for name in names
            },
            "a row of zeros": {name: np.zeros_like(x[name][:1]) for name in names},
            "the held-out minimum": {name: x[name].min(axis=0, keepdims=True) for name in names},
            "the held-out maximum": {name: x[name].max(axis=0, keepdims=True) for name in names},
        }
        if n
        else {}
    )


def lean_differs(contract: ModelContract, lean: Outputs, keras: Outputs) -> str | None:
    """How the lean form's answers differ from the Keras model's, output by output; None when they are equal."""
    for output in contract.outputs:
        ours, theirs = np.asarray(lean[output.name]), np.asarray(keras[output.name])
        where = f"output {output.name!r}"
        if ours.shape != theirs.shape:
            return f"{where}: shape {list(ours.shape)}, Keras {list(theirs.shape)}"
        if not np.allclose(ours, theirs, rtol=LEAN_RTOL, atol=LEAN_ATOL, equal_nan=True):
            return f"{where}: values differ by up to {float(np.nanmax(np.abs(ours - theirs))):.3g}"
        if output.task in ("classification", "multilabel"):
            decided = _decided(output, theirs)
            if (output.labels(ours)[decided] != output.labels(theirs)[decided]).any():
                return f"{where}: another class for a row"
    return None


def max_difference(contract: ModelContract, lean: Outputs, keras: Outputs) -> float:
    return max(
        float(np.max(np.abs(np.asarray(lean[o.name], np.float64) - np.asarray(keras[o.name], np.float64))))
        for o in contract.outputs
    )


def _decided(output: Any, values: np.ndarray) -> np.ndarray:
    """Where the class (or a label) is not a near tie: a row mask, or for multi-label a mask per label."""
    if output.task == "multilabel":
        return np.abs(values - output.threshold) > LEAN_ATOL
    ranked = np.sort(output.probabilities(values), axis=1)
    return (ranked[:, -1] - ranked[:, -2]) > LEAN_ATOL if ranked.shape[1] > 1 else np.ones(len(values), bool)
