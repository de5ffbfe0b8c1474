"""A model's contract: the named tensors it takes and the named tensors it answers, and what each answer means.

Written by the training notebook beside the model (`pipeline.notebook.log_model`: the MLflow signature, read off
the Keras model itself, plus each output's task and names in the MLmodel file's metadata) and read back by
everything downstream: the pipeline's check before registering, the gate, the service's request validation and
answers, the job worker. Nothing here knows any particular model.

    inputs      named tensors, each numbers (int or float of a width) or strings, of a fixed shape per row
    outputs     named tensors, each with a task:
                  classification  [-1, k] softmax over k >= 2 classes, or [-1, 1] one sigmoid (class 1's probability)
                  multilabel      [-1, k] k independent sigmoids: each class on at or above THRESHOLD
                  regression      [-1] or [-1, k]: k values per row

Rows travel as a dict of arrays keyed by input name, answers as a dict keyed by output name. A model of one input
and one output keeps the simple request forms (`{"instances": rows}`) and answers (`{"predictions": ...}`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

Task = Literal["classification", "multilabel", "regression"]
TASKS: tuple[Task, ...] = ("classification", "multilabel", "regression")
METADATA_KEY = "nbship"  # the MLmodel metadata entry holding the outputs' tasks and names, the feature names
NUMERIC_KINDS = "iuf"
STRING = np.dtype(object)  # string tensors, as MLflow's signature stores them (`"dtype": "object"`)
NUMERIC_COLUMN_TYPES = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32}
PROBABILITY_TOLERANCE = 1e-3
DEFAULT_THRESHOLD = 0.5

Rows = dict[str, np.ndarray]  # a batch of rows: input name -> [n, *shape]
Outputs = dict[str, np.ndarray]  # a batch of answers: output name -> [n, *shape]


class ContractError(ValueError):
    """A model, its logged contract, or its outputs do not fit what the service can serve."""


def show_shape(shape: tuple[int, ...]) -> str:
    """A shape with its batch dimension, as the MLflow signature writes it: `[-1, 8, 8, 1]`."""
    return "[" + ", ".join(str(d) for d in (-1, *shape)) + "]"


@dataclass(frozen=True)
class Tensor:
    shape: tuple[int, ...]  # per row: without the batch dimension
    dtype: np.dtype  # a numeric dtype, or STRING
    name: str = ""

    def __post_init__(self) -> None:
        if self.dtype.kind not in NUMERIC_KINDS and self.dtype != STRING:
            raise ContractError(f"tensor {self.name!r}: {self.dtype} is neither numbers nor strings")
        if any(d < 1 for d in self.shape):
            raise ContractError(
                f"tensor {self.name!r} of shape {show_shape(self.shape)} has unknown dimensions besides the batch; "
                "nbship serves fixed shapes"
            )

    @property
    def strings(self) -> bool:
        return self.dtype == STRING

    @property
    def dtype_name(self) -> str:
        return "string" if self.strings else self.dtype.name

    @property
    def width(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __str__(self) -> str:
        return f"{self.dtype_name} {show_shape(self.shape)}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype_name, "shape": [-1, *self.shape]}


@dataclass(frozen=True)
class Output:
    """One named output and what its values mean."""

    tensor: Tensor
    task: Task
    class_names: tuple[str, ...] | None = None  # classification and multilabel
    value_names: tuple[str, ...] | None = None  # regression: a name for each of its values
    threshold: float = DEFAULT_THRESHOLD  # multilabel: a class is on at or above it

    def __post_init__(self) -> None:
        tensor, where = self.tensor, f"output {self.tensor.name!r}"
        if self.task not in TASKS:
            raise ContractError(f"{where}: task {self.task!r}, expected one of {', '.join(TASKS)}")
        if tensor.strings:
            raise ContractError(f"{where} answers strings; nbship needs numeric outputs")
        if len(tensor.shape) > 1:
            raise ContractError(f"{where} {show_shape(tensor.shape)} is not one value or one vector per row")
        if self.task != "regression" and tensor.shape == ():
            raise ContractError(f"{where}: a {self.task} output answers [-1, k] probabilities")
        if self.task == "multilabel" and not 0 < self.threshold < 1:
            raise ContractError(f"{where}: the threshold must be in (0, 1), got {self.threshold}")
        if self.class_names is not None:
            if self.task == "regression":
                raise ContractError(f"{where}: class names are for classifiers; this output is a regression")
            if len(self.class_names) != self.n_classes:
                raise ContractError(
                    f"{where}: {len(self.class_names)} class names for {self.n_classes} classes"
                )
            _unique(self.class_names, f"{where}: class names")
        if self.value_names is not None:
            if self.task != "regression":
                raise ContractError(
                    f"{where}: value names are for regressions; use class names for a {self.task}"
                )
            if len(self.value_names) != max(1, tensor.width):
                raise ContractError(
                    f"{where}: {len(self.value_names)} value names for {max(1, tensor.width)} values"
                )
            _unique(self.value_names, f"{where}: value names")

    @property
    def name(self) -> str:
        return self.tensor.name

    @property
    def binary(self) -> bool:
        """One sigmoid: the probability of the positive class (class 1)."""
        return self.task == "classification" and self.tensor.shape == (1,)

    @property
    def n_classes(self) -> int | None:
        if self.task == "regression":
            return None
        return 2 if self.binary else self.tensor.shape[0]

    def differs_from(self, other: Output, named: bool = True) -> str | None:
        if (self.name if named else "", self.task) != (other.name if named else "", other.task):
            return f"output {self.name!r} ({self.task}) against {other.name!r} ({other.task})"
        if self.tensor.shape != other.tensor.shape:
            return f"output {self.name!r} {show_shape(self.tensor.shape)} against {show_shape(other.tensor.shape)}"
        if (self.class_names, self.value_names) != (other.class_names, other.value_names):
            return f"output {self.name!r}: other class or value names"
        if self.threshold != other.threshold:
            return f"output {self.name!r}: threshold {self.threshold} against {other.threshold}"
        return None

    def check(self, values: Any, n_rows: int) -> np.ndarray:
        """The output's values for `n_rows` rows as an array, or ContractError saying how they break the contract."""
        values = np.asarray(values)
        where = f"output {self.name!r}"
        expected = (n_rows, *self.tensor.shape)
        if values.shape != expected:
            raise ContractError(
                f"the model answered {where} of shape {list(values.shape)} for {n_rows} rows; its signature says "
                f"{show_shape(self.tensor.shape)} (that is {list(expected)})"
            )
        if values.dtype.kind not in NUMERIC_KINDS or not np.isfinite(values).all():
            raise ContractError(f"the model answered values that are not finite numbers for {where}")
        if self.task == "regression":
            return values
        low, high = values.min(initial=0), values.max(initial=0)
        if low < -PROBABILITY_TOLERANCE or high > 1 + PROBABILITY_TOLERANCE:
            raise ContractError(
                f"{where}: a {self.task} output answers probabilities in [0, 1] (softmax or sigmoids), got values "
                f"in [{low:.3g}, {high:.3g}]"
            )
        if (
            self.task == "classification"
            and not self.binary
            and n_rows
            and not np.allclose(values.sum(axis=1), 1, atol=1e-2)
        ):
            raise ContractError(
                f"{where}: a classifier's {self.tensor.shape[0]} outputs must sum to 1 per row (softmax); end the "
                "model with a softmax, declare task='multilabel' for independent sigmoids, or 'regression'"
            )
        return values

    def probabilities(self, values: np.ndarray) -> np.ndarray:
        """Class probabilities [n, n_classes] (a sigmoid's p becomes [1 - p, p])."""
        values = np.asarray(values, dtype=np.float64)
        return np.concatenate([1 - values, values], axis=1) if self.binary else values

    def labels(self, values: np.ndarray) -> np.ndarray:
        """Classification: the class of each row [n]; multilabel: whether each class is on [n, k]."""
        if self.task == "multilabel":
            return np.asarray(values) >= self.threshold
        return self.probabilities(values).argmax(axis=1)

    def answer(self, values: np.ndarray) -> dict[str, list[Any]]:
        """This output's answer for each row (columnar: row i is entry i of each list)."""
        if self.task == "regression":
            numbers = np.asarray(values, dtype=np.float64)
            return {"predictions": (numbers[:, 0] if self.tensor.shape == (1,) else numbers).tolist()}
        probabilities = self.probabilities(values)
        answer: dict[str, list[Any]]
        if self.task == "multilabel":
            on = [np.flatnonzero(row).tolist() for row in self.labels(values)]
            answer = {"predictions": on}
            if self.class_names is not None:
                answer["classes"] = [[self.class_names[i] for i in row] for row in on]
        else:
            labels = probabilities.argmax(axis=1)
            answer = {"predictions": labels.tolist()}
            if self.class_names is not None:
                answer["classes"] = [self.class_names[i] for i in labels]
        answer["probabilities"] = probabilities.tolist()
        return answer

    def metadata(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"task": self.task}
        if self.class_names is not None:
            entry["class_names"] = list(self.class_names)
        if self.value_names is not None:
            entry["value_names"] = list(self.value_names)
        if self.task == "multilabel":
            entry["threshold"] = self.threshold
        return entry

    def describe(self) -> dict[str, Any]:
        return self.tensor.describe() | self.metadata()


@dataclass(frozen=True)
class ModelContract:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Output, ...]
    feature_names: tuple[str, ...] | None = None  # the one flat input's values, named in order
    columns: bool = (
        False  # a column-based signature (a pyfunc of a DataFrame model): feature names are columns
    )

    def __post_init__(self) -> None:
        if not self.inputs or not self.outputs:
            raise ContractError(
                "a model takes at least one input tensor and answers at least one output tensor"
            )
        for kind, tensors in (("input", self.inputs), ("output", [o.tensor for o in self.outputs])):
            names = [t.name for t in tensors]
            if len(tensors) > 1 and not all(names):
                raise ContractError(
                    f"a model of several {kind}s must name each of them: name= on each keras.Input"
                )
            _unique(names, f"{kind} names")
        if self.feature_names is not None:
            shape = self.inputs[0].shape
            if len(self.inputs) != 1 or len(shape) != 1 or len(self.feature_names) != shape[0]:
                raise ContractError(
                    f"{len(self.feature_names)} feature names for input {show_shape(shape)}: name each value of a "
                    "model's one flat input, in order (several inputs are named by their own names)"
                )
            _unique(self.feature_names, "feature names")

    @classmethod
    def single(
        cls,
        task: Task,
        input: Tensor,
        output: Tensor,
        class_names: Sequence[str] | None = None,
        feature_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ModelContract:
        """The contract of a model of one input and one output."""
        named = Output(output, task, tuple(class_names) if class_names is not None else None, **kwargs)
        return cls((input,), (named,), tuple(feature_names) if feature_names is not None else None)

    # --- what the model is ---

    @property
    def single_input(self) -> bool:
        return len(self.inputs) == 1

    @property
    def single_output(self) -> bool:
        return len(self.outputs) == 1

    @property
    def input(self) -> Tensor:
        """The first input (the only one of a single-input model)."""
        return self.inputs[0]

    @property
    def output(self) -> Output:
        """The first output (the only one of a single-output model): its task sets the default gate metric."""
        return self.outputs[0]

    @property
    def task(self) -> Task:
        return self.output.task

    @property
    def scalar_columns(self) -> bool:
        """Every input one value per row: the model takes a table's rows (dataframe_records, dataframe_split)."""
        return not self.single_input and all(t.shape in ((), (1,)) for t in self.inputs)

    @property
    def uniform_columns(self) -> bool:
        """A table's columns all of one dtype and shape: its rows may come as positional lists (dataframe_split)."""
        return self.scalar_columns and len({(t.dtype, t.shape) for t in self.inputs}) == 1

    def differs_from(self, other: ModelContract) -> str | None:
        """Why a request or answer valid for `other` would not be for this model, or None when they match. The
        name of a model's only input or only output is not part of its requests and answers (`instances`,
        `predictions`): versions that differ by it alone match."""
        named = not (self.single_input and other.single_input)
        ours, theirs = (
            [(t.name if named else "", t.shape, t.dtype) for t in c.inputs] for c in (self, other)
        )
        if ours != theirs:
            return f"inputs {_show(self.inputs)} against {_show(other.inputs)}"
        named = not (self.single_output and other.single_output)
        if named and [o.name for o in self.outputs] != [o.name for o in other.outputs]:
            return f"outputs {[o.name for o in self.outputs]} against {[o.name for o in other.outputs]}"
        for mine, yours in zip(self.outputs, other.outputs, strict=True):
            if differs := mine.differs_from(yours, named):
                return differs
        if self.feature_names != other.feature_names:
            return "other feature names"
        return None

    def __str__(self) -> str:
        outputs = ", ".join(f"{o.name or 'output'} ({o.task}) {o.tensor}" for o in self.outputs)
        return f"{_show(self.inputs)} -> {outputs}"

    # --- the model's answers ---

    def named_outputs(self, answered: Any) -> Outputs:
        """What a model answered (a dict by name, a list in the outputs' order, or one array) as a dict by name."""
        names = [o.name for o in self.outputs]
        if isinstance(answered, Mapping):
            missing = [name for name in names if name not in answered]
            if missing:
                raise ContractError(
                    f"the model answered no output {missing[0]!r}; it answered {sorted(answered)}"
                )
            return {name: answered[name] for name in names}
        if isinstance(answered, (list, tuple)):
            if len(answered) != len(names):
                raise ContractError(
                    f"the model answered {len(answered)} outputs; its signature says {len(names)}"
                )
            return dict(zip(names, answered, strict=True))
        if len(names) != 1:
            raise ContractError(f"the model answered one output; its signature says {len(names)}")
        return {names[0]: answered}

    def check_outputs(self, answered: Any, n_rows: int) -> Outputs:
        """Every output for `n_rows` rows as arrays, or ContractError saying how they break the contract."""
        named = self.named_outputs(answered)
        return {output.name: output.check(named[output.name], n_rows) for output in self.outputs}

    def answer(self, outputs: Outputs) -> dict[str, Any]:
        """The answer for each row, as /predict and job results give it: one output's answer, or each output's
        under `outputs` by name."""
        if self.single_output:
            return self.output.answer(outputs[self.output.name])
        return {"outputs": {output.name: output.answer(outputs[output.name]) for output in self.outputs}}

    def answers(self, outputs: Outputs, counts: Sequence[int]) -> list[dict[str, Any]]:
        """Each request's or job's answer (as `answer` gives it) for a batch's outputs, by their row counts: the
        batch's answer is built once, its lists cut (numpy's per-call cost, paid per request, was most of it)."""
        whole = self.answer(outputs)
        if len(counts) == 1:
            return [whole]
        starts = [0, *itertools.accumulate(counts)]
        return [_cut(whole, start, end) for start, end in itertools.pairwise(starts)]

    # --- stored beside the model ---

    def metadata(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"outputs": {output.name: output.metadata() for output in self.outputs}}
        if self.feature_names is not None:
            entry["feature_names"] = list(self.feature_names)
        return {METADATA_KEY: entry}

    def signature(self) -> ModelSignature:
        from mlflow.models.signature import ModelSignature
        from mlflow.types import Schema, TensorSpec

        def spec(tensor: Tensor) -> TensorSpec:
            return TensorSpec(tensor.dtype, (-1, *tensor.shape), name=tensor.name)

        return ModelSignature(
            inputs=Schema([spec(t) for t in self.inputs]),
            outputs=Schema([spec(o.tensor) for o in self.outputs]),
        )

    def describe(self) -> dict[str, Any]:
        """For GET /model."""
        described: dict[str, Any] = {
            "inputs": [tensor.describe() for tensor in self.inputs],
            "outputs": [output.describe() for output in self.outputs],
        }
        if self.feature_names is not None:
            described["feature_names"] = list(self.feature_names)
        return described


def rows_in(rows: Rows) -> int:
    """How many rows a batch holds (every input has as many)."""
    return len(next(iter(rows.values())))


def join_rows(batches: Sequence[Rows]) -> Rows:
    """Several requests' or jobs' rows as one batch, input by input (in the order given)."""
    if len(batches) == 1:
        return batches[0]
    return {name: np.concatenate([rows[name] for rows in batches]) for name in batches[0]}


def split_outputs(outputs: Outputs, counts: Sequence[int]) -> list[Outputs]:
    """A batch's outputs cut back into each request's or job's, by their row counts."""
    if len(counts) == 1:
        return [outputs]
    ends = np.cumsum(counts)[:-1]
    parts = {name: np.split(values, ends) for name, values in outputs.items()}
    return [{name: parts[name][i] for name in outputs} for i in range(len(counts))]


def _cut(answer: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    """Rows start:end of a columnar answer (each output's, under `outputs`, for a model of several)."""
    return {
        key: _cut(value, start, end) if isinstance(value, dict) else value[start:end]
        for key, value in answer.items()
    }


def conform_rows(contract: ModelContract, rows: Rows) -> Rows:
    """Rows stored or sent elsewhere, checked against the contract of the model about to answer them (a job
    waits in the store while versions change): each input by name (rows of a model's only input may come
    unnamed, under ""), of its shape, cast to its dtype; ContractError otherwise."""
    if set(rows) == {""} and contract.single_input:
        rows = {contract.input.name: rows[""]}
    if set(rows) != {t.name for t in contract.inputs}:
        raise ContractError(
            f"the rows hold inputs {sorted(rows)}; the model takes {[t.name for t in contract.inputs]}"
        )
    conformed = {}
    for tensor in contract.inputs:
        values = rows[tensor.name]
        if values.shape[1:] != tensor.shape:
            raise ContractError(
                f"input {tensor.name!r}: rows of shape {show_shape(values.shape[1:])}; the model takes "
                f"{show_shape(tensor.shape)}"
            )
        if tensor.strings != (values.dtype == STRING):
            raise ContractError(
                f"input {tensor.name!r}: {values.dtype} rows; the model takes {tensor.dtype_name}"
            )
        conformed[tensor.name] = values if tensor.strings else values.astype(tensor.dtype, copy=False)
    return conformed


def _unique(names: Sequence[str], what: str) -> None:
    if len(set(names)) != len(names):
        raise ContractError(f"{what} must be unique")


def _show(tensors: Sequence[Tensor]) -> str:
    return ", ".join(f"{t.name or 'input'} {t}" for t in tensors)


def read_contract(model_dir: Path) -> ModelContract:
    """The contract of the MLflow model in `model_dir` (the folder holding `MLmodel`)."""
    from service.models.mlmodel import MLmodel, tensors_only

    model = MLmodel.read(model_dir)
    if model.inputs is None:
        raise ContractError(
            f"the model in {model_dir} has no signature: log it with pipeline.notebook.log_model"
        )
    entry = model.metadata.get(METADATA_KEY, {})
    inputs = model.inputs
    columns = not tensors_only(inputs)
    if columns:
        types = [column.type for column in inputs]
        if not types or any(name not in NUMERIC_COLUMN_TYPES for name in types):
            raise ContractError(f"the model's input columns {types} are not all numeric")
        dtype = np.dtype(np.result_type(*(NUMERIC_COLUMN_TYPES[name] for name in types)))
        tensors: tuple[Tensor, ...] = (Tensor((len(types),), dtype, "inputs"),)
        feature_names: tuple[str, ...] | None = tuple(str(column.name) for column in inputs)
    else:
        tensors = _canonical(tuple(_tensor(spec, "inputs") for spec in inputs), "inputs")
        feature_names = tuple(entry["feature_names"]) if entry.get("feature_names") else None
    return ModelContract(tensors, _outputs(model.outputs, entry), feature_names, columns)


def _tensor(spec: Any, default_name: str) -> Tensor:
    shape = tuple(int(d) for d in spec.shape)
    if shape[:1] != (-1,):
        raise ContractError(f"tensor {spec.name!r} of shape {list(shape)} has no batch dimension first")
    dtype = np.dtype(spec.dtype)
    return Tensor(shape[1:], STRING if dtype.kind in "OUS" else dtype, spec.name or default_name)


# Names Keras makes up for an unnamed tensor, with a counter of the session: versions logged before nbship named
# the one input and output read as `inputs` and `outputs`, so that they stay comparable with later ones.
_GENERATED = re.compile(r"(keras_tensor|input_layer)(_\d+)?")


def _canonical(tensors: tuple[Tensor, ...], name: str) -> tuple[Tensor, ...]:
    if len(tensors) == 1 and _GENERATED.fullmatch(tensors[0].name):
        return (Tensor(tensors[0].shape, tensors[0].dtype, name),)
    return tensors


def _outputs(outputs: Any, entry: dict[str, Any]) -> tuple[Output, ...]:
    from service.models.mlmodel import tensors_only

    if not outputs:
        raise ContractError("the model's signature has no outputs: log it with pipeline.notebook.log_model")
    if not tensors_only(outputs):
        tensors: tuple[Tensor, ...] = (Tensor((len(outputs),), np.dtype(np.float64), "outputs"),)
    else:
        tensors = _canonical(tuple(_tensor(spec, "outputs") for spec in outputs), "outputs")
    described = entry.get("outputs")
    if described is None:  # logged before outputs were named: one entry for the one output
        described = {tensors[0].name: entry} if entry else {}
    found = []
    for tensor in tensors:
        meta = described.get(tensor.name, {})
        found.append(
            Output(
                tensor,
                meta.get("task") or _guess_task(tensor),
                tuple(meta["class_names"]) if meta.get("class_names") else None,
                tuple(meta["value_names"]) if meta.get("value_names") else None,
                float(meta.get("threshold", DEFAULT_THRESHOLD)),
            )
        )
    return tuple(found)


def _guess_task(output: Tensor) -> Task:
    """A model logged without nbship's metadata: a vector of several outputs is read as class probabilities."""
    return "classification" if output.shape and output.shape[0] > 1 else "regression"
