"""A model's contract: what one row it takes is, what it answers, and what kind of model it is.

Written by the training notebook beside the model (`pipeline.notebook.log_model`: the MLflow signature, read off
the Keras model itself, plus the task and optional class and feature names in the MLmodel file's metadata) and
read back by everything downstream: the pipeline's check before registering, the gate, the service's request
validation and answers, the job worker. Nothing here knows any particular model.

    classification  output [-1, k] (k >= 2: softmax over k classes) or [-1, 1] (a sigmoid: the positive class)
    regression      output [-1, k] or [-1]: k continuous values per row
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")
METADATA_KEY = "nbship"  # the MLmodel metadata entry holding the task, class names and feature names
NUMERIC_KINDS = "iuf"
NUMERIC_COLUMN_TYPES = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32}
PROBABILITY_TOLERANCE = 1e-3


class ContractError(ValueError):
    """A model, its logged contract, or its outputs do not fit what the service can serve."""


def show_shape(shape: tuple[int, ...]) -> str:
    """A shape with its batch dimension, as the MLflow signature writes it: `[-1, 8, 8, 1]`."""
    return "[" + ", ".join(str(d) for d in (-1, *shape)) + "]"


@dataclass(frozen=True)
class Tensor:
    shape: tuple[int, ...]  # per row: without the batch dimension
    dtype: np.dtype
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.dtype.name} {show_shape(self.shape)}"

    @property
    def width(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class ModelContract:
    task: Task
    input: Tensor
    output: Tensor
    class_names: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    columns: bool = (
        False  # a column-based signature (a pyfunc of a DataFrame model): feature names are columns
    )

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ContractError(f"task {self.task!r}: expected one of {', '.join(TASKS)}")
        if self.input.dtype.kind not in NUMERIC_KINDS:
            raise ContractError(
                f"the model takes {self.input.dtype.name} input; nbship serves numeric tensors only "
                "(a string input such as a TextVectorization layer is not supported)"
            )
        if self.output.dtype.kind not in NUMERIC_KINDS:
            raise ContractError(f"the model answers {self.output.dtype.name}; nbship needs numeric outputs")
        if any(d < 1 for d in self.input.shape) or not self.input.shape:
            raise ContractError(
                f"the model's input {show_shape(self.input.shape)} has no fixed shape per row; "
                "nbship serves a fixed-rank tensor with every dimension but the batch known"
            )
        if any(d < 1 for d in self.output.shape) or len(self.output.shape) > 1:
            raise ContractError(
                f"the model's output {show_shape(self.output.shape)} is not one value or one vector per row"
            )
        if self.task == "classification":
            if self.output.shape == ():
                raise ContractError("a classifier must answer [-1, k] probabilities or one [-1, 1] sigmoid")
            if self.class_names is not None and len(self.class_names) != self.n_classes:
                raise ContractError(
                    f"{len(self.class_names)} class names for a model with {self.n_classes} classes"
                )
        elif self.class_names is not None:
            raise ContractError("class names are for classifiers; this model is a regressor")
        if self.feature_names is not None:
            if len(self.input.shape) != 1 or len(self.feature_names) != self.input.shape[0]:
                raise ContractError(
                    f"{len(self.feature_names)} feature names for input {show_shape(self.input.shape)}: "
                    "name each value of a flat row, in order"
                )
            if len(set(self.feature_names)) != len(self.feature_names):
                raise ContractError("feature names must be unique")

    # --- what the model is ---

    @property
    def binary(self) -> bool:
        """One sigmoid output: the probability of the positive class (class 1)."""
        return self.task == "classification" and self.output.shape == (1,)

    @property
    def n_classes(self) -> int | None:
        if self.task != "classification":
            return None
        return 2 if self.binary else self.output.shape[0]

    def differs_from(self, other: ModelContract) -> str | None:
        """Why a request or answer valid for `other` would not be for this model, or None when they match."""
        if self.task != other.task:
            return f"a {self.task} model against a {other.task} model"
        if (self.input.shape, self.input.dtype) != (other.input.shape, other.input.dtype):
            return f"input {self.input} against {other.input}"
        if self.output.shape != other.output.shape:
            return f"output {show_shape(self.output.shape)} against {show_shape(other.output.shape)}"
        if self.feature_names != other.feature_names:
            return "other feature names"
        if self.class_names != other.class_names:
            return "other class names"
        return None

    def __str__(self) -> str:
        return f"{self.task}: {self.input} -> {self.output}"

    # --- the model's answers ---

    def check_outputs(self, outputs: Any, n_rows: int) -> np.ndarray:
        """The outputs for `n_rows` rows as an array, or ContractError saying how they break the contract."""
        outputs = np.asarray(outputs)
        expected = (n_rows, *self.output.shape)
        if outputs.shape != expected:
            raise ContractError(
                f"the model answered shape {list(outputs.shape)} for {n_rows} rows; its signature says "
                f"{show_shape(self.output.shape)} (that is {list(expected)})"
            )
        if outputs.dtype.kind not in NUMERIC_KINDS or not np.isfinite(outputs).all():
            raise ContractError("the model answered values that are not finite numbers")
        if self.task == "classification":
            if (
                outputs.min(initial=0) < -PROBABILITY_TOLERANCE
                or outputs.max(initial=0) > 1 + PROBABILITY_TOLERANCE
            ):
                raise ContractError(
                    "a classifier must answer probabilities in [0, 1] (softmax or sigmoid), got values in "
                    f"[{outputs.min():.3g}, {outputs.max():.3g}]"
                )
            if not self.binary and n_rows and not np.allclose(outputs.sum(axis=1), 1, atol=1e-2):
                raise ContractError(
                    f"a classifier's {self.output.shape[0]} outputs must sum to 1 per row (softmax); "
                    "end the model with a softmax, or declare task='regression'"
                )
        return outputs

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Class probabilities [n, n_classes] (a sigmoid's p becomes [1 - p, p])."""
        outputs = np.asarray(outputs, dtype=np.float64)
        return np.concatenate([1 - outputs, outputs], axis=1) if self.binary else outputs

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        return self.probabilities(outputs).argmax(axis=1)

    def answer(self, outputs: np.ndarray) -> dict[str, list[Any]]:
        """The answer for each row, as /predict and job results give it (columnar: row i is entry i of each)."""
        if self.task == "regression":
            values = np.asarray(outputs, dtype=np.float64)
            if self.output.shape == (1,):
                values = values[:, 0]
            return {"predictions": values.tolist()}
        probabilities = self.probabilities(outputs)
        labels = probabilities.argmax(axis=1)
        answer: dict[str, list[Any]] = {"predictions": labels.tolist()}
        if self.class_names is not None:
            answer["classes"] = [self.class_names[i] for i in labels]
        answer["probabilities"] = probabilities.tolist()
        return answer

    # --- stored beside the model ---

    def metadata(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"task": self.task}
        if self.class_names is not None:
            entry["class_names"] = list(self.class_names)
        if self.feature_names is not None:
            entry["feature_names"] = list(self.feature_names)
        return {METADATA_KEY: entry}

    def signature(self) -> ModelSignature:
        from mlflow.models.signature import ModelSignature
        from mlflow.types import Schema, TensorSpec

        def spec(tensor: Tensor, default: str) -> TensorSpec:
            return TensorSpec(tensor.dtype, (-1, *tensor.shape), name=tensor.name or default)

        return ModelSignature(
            inputs=Schema([spec(self.input, "inputs")]), outputs=Schema([spec(self.output, "outputs")])
        )

    def describe(self) -> dict[str, Any]:
        """For GET /model."""
        described: dict[str, Any] = {
            "task": self.task,
            "input": {"dtype": self.input.dtype.name, "shape": [-1, *self.input.shape]},
            "output": {"dtype": self.output.dtype.name, "shape": [-1, *self.output.shape]},
        }
        if self.class_names is not None:
            described["class_names"] = list(self.class_names)
        if self.feature_names is not None:
            described["feature_names"] = list(self.feature_names)
        return described


def read_contract(model_dir: Path) -> ModelContract:
    """The contract of the MLflow model in `model_dir` (the folder holding `MLmodel`)."""
    from mlflow.models import Model

    model = Model.load(str(model_dir))
    signature = model.signature
    if signature is None or signature.inputs is None:
        raise ContractError(
            f"the model in {model_dir} has no signature: log it with pipeline.notebook.log_model"
        )
    entry = (model.metadata or {}).get(METADATA_KEY, {})
    inputs = signature.inputs
    columns = not inputs.is_tensor_spec()
    if columns:
        types = [column.type.name for column in inputs.inputs]
        if not types or any(name not in NUMERIC_COLUMN_TYPES for name in types):
            raise ContractError(f"the model's input columns {types} are not all numeric")
        dtype = np.dtype(np.result_type(*(NUMERIC_COLUMN_TYPES[name] for name in types)))
        input_tensor = Tensor((len(types),), dtype)
        feature_names: tuple[str, ...] | None = tuple(str(name) for name in inputs.input_names())
    else:
        if len(inputs.inputs) != 1:
            raise ContractError(f"the model takes {len(inputs.inputs)} tensors; nbship serves models of one")
        spec = inputs.inputs[0]
        input_tensor = Tensor(tuple(int(d) for d in spec.shape[1:]), np.dtype(spec.type), spec.name)
        if spec.shape[:1] != (-1,):
            raise ContractError(f"the model's input shape {list(spec.shape)} has no batch dimension first")
        feature_names = tuple(entry["feature_names"]) if entry.get("feature_names") else None
    output_tensor = _output_tensor(signature.outputs)
    task = entry.get("task") or _guess_task(output_tensor)
    class_names = tuple(entry["class_names"]) if entry.get("class_names") else None
    return ModelContract(task, input_tensor, output_tensor, class_names, feature_names, columns)


def _output_tensor(outputs: Any) -> Tensor:
    if outputs is None or not outputs.inputs:
        raise ContractError("the model's signature has no outputs: log it with pipeline.notebook.log_model")
    if not outputs.is_tensor_spec():
        return Tensor((len(outputs.inputs),), np.dtype(np.float64))
    if len(outputs.inputs) != 1:
        raise ContractError(f"the model answers {len(outputs.inputs)} tensors; nbship serves models of one")
    spec = outputs.inputs[0]
    return Tensor(tuple(int(d) for d in spec.shape[1:]), np.dtype(spec.type), spec.name)


def _guess_task(output: Tensor) -> Task:
    """A model logged without nbship's metadata: a vector of several outputs is read as class probabilities."""
    return "classification" if output.shape and output.shape[0] > 1 else "regression"
