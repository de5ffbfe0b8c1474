"""Request and response shapes of the service, made from the served model's contract when the service is defined,
so the OpenAPI document shows the real input shape and answer.

Requests are checked per request, before adaptive batching merges them, so an error names the row and field of
the request that sent it (service.http.rows). A check's error is a pydantic error: BentoML answers it with 400,
turned into the service's one error shape and status 422 by service.http.error_rewrite.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from service.http.rows import FORMATS, RequestError, RowRules, number_limit
from service.models.contract import ModelContract, Output, Tensor, show_shape


class ServedModel(BaseModel):
    name: str
    version: str


def answer_model(contract: ModelContract | None) -> type[BaseModel]:
    """The answer of /predict (and a job's result, with the model): one entry per row in each list; a model of
    several outputs answers each under `outputs` by name."""
    served = (ServedModel, Field(description="The registered model and version that answered."))
    if contract is None:  # the service is defined without its model (a build's import): a permissive answer
        return create_model("Answer", model=served, predictions=(list[Any], ...))
    if contract.single_output:
        return create_model("Answer", model=served, **output_fields(contract.output))
    each: dict[str, Any] = {
        output.name: (create_model(f"Answer_{i}", **output_fields(output)), Field(description=_about(output)))
        for i, output in enumerate(contract.outputs)
    }
    outputs = (create_model("Outputs", **each), Field(description="Each output's answer, by its name."))
    return create_model("Answer", model=served, outputs=outputs)


def answer_of(answer: type[BaseModel], name: str, version: str, body: dict[str, Any]) -> BaseModel:
    """The answer model `answer` (answer_model's) of a contract's answer (ModelContract.answer), built without
    validation: the values are the model's own, in the shape the contract gives them."""
    served = _served(name, version)
    if "outputs" in body:
        outputs = _model_of(answer, "outputs")
        each = {
            key: _model_of(outputs, key).model_construct(None, **values)
            for key, values in body["outputs"].items()
        }
        body = {"outputs": outputs.model_construct(None, **each)}
    return answer.model_construct(None, model=served, **body)


@functools.lru_cache(maxsize=16)
def _served(name: str, version: str) -> ServedModel:
    """One a version: every answer of it shares it (answers are only read, to be sent)."""
    return ServedModel.model_construct(name=name, version=version)


def _model_of(container: type[BaseModel], field: str) -> type[BaseModel]:
    annotation = container.model_fields[field].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation


def output_fields(output: Output) -> dict[str, Any]:
    """The lists of one output's answer (service.models.contract.Output.answer)."""
    if output.task == "regression":
        values = list[float] if output.tensor.shape in ((), (1,)) else list[list[float]]
        return {"predictions": (values, Field(description="The model's values per row."))}
    several = output.task == "multilabel"
    fields: dict[str, Any] = {
        "predictions": (
            list[list[int]] if several else list[int],
            Field(
                description="The classes on for each row."
                if several
                else "Predicted class index of each row."
            ),
        )
    }
    if output.class_names is not None:
        fields["classes"] = (
            list[list[str]] if several else list[str],
            Field(description="Their names." if several else "Predicted class name of each row."),
        )
    fields["probabilities"] = (
        list[list[float]],
        Field(description=f"Probabilities of the {output.n_classes} classes, per row."),
    )
    return fields


def _about(output: Output) -> str:
    return f"{output.task} {output.tensor}"


def request_model(name: str, rules: RowRules, contract: ModelContract | None) -> type[BaseModel]:
    """A request body in any of the formats (service.http.rows), parsed into `rows`: arrays by input name."""

    class Rows(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)

        rows: dict[str, np.ndarray]

        @model_validator(mode="before")
        @classmethod
        def _parse(cls, data: Any) -> Any:
            if _parsed(data):  # validated again (a JSON body never holds arrays)
                return data
            try:
                return {"rows": rules.body(data)}
            except RequestError as exc:
                # The message goes in the context: braces in it must not be read as a template.
                raise PydanticCustomError("invalid_request", "{reason}", {"reason": str(exc)}) from None

        @classmethod
        def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
            return request_schema(name, contract, rules.max_rows)  # the parsed array has none; the body has

    Rows.__name__ = Rows.__qualname__ = name
    return Rows


def _parsed(data: Any) -> bool:
    rows = data.get("rows") if isinstance(data, dict) and list(data) == ["rows"] else None
    return isinstance(rows, dict) and all(isinstance(values, np.ndarray) for values in rows.values())


def value_schema(dtype: np.dtype) -> dict[str, Any]:
    """One value of the model's input as JSON may carry it, exactly as the rows' check takes it
    (service.http.rows): a whole number in an integer dtype's range, or a number that rounds to a finite value of
    a float dtype (inclusive bounds: FastAPI reads OpenAPI 3.0's boolean exclusive bounds as numbers). A whole
    number is `multipleOf: 1`, not `type: integer`: OpenAPI 3.0 reads schemas as JSON Schema draft 4, where `2.0`
    is not an integer, and JSON (like the check) does not tell 2.0 from 2."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return {"type": "number", "multipleOf": 1, "minimum": int(info.min), "maximum": int(info.max)}
    limit = number_limit(dtype)
    return {"type": "number", "minimum": -limit, "maximum": limit}


def request_schema(title: str, contract: ModelContract | None, max_rows: int) -> dict[str, Any]:
    """The request body in the OpenAPI document: exactly one of the formats, rows of the inputs' real shapes, the
    body the rows' check takes and no other (but for equal row counts by input name, which it says in words)."""
    if contract is None:
        properties = {key: _array({}, max_rows) for key in ("instances", "inputs")}
        described = "rows of the model's inputs"
    elif contract.single_input:
        properties = _one_input(contract, max_rows)
        described = f"each row of shape {show_shape(contract.input.shape)}, {contract.input.dtype_name}"
    else:
        properties = _named_inputs(contract, max_rows)
        described = "every input the same number of rows: " + ", ".join(
            f"{t.name} {t}" for t in contract.inputs
        )
    return {
        "title": title,
        "type": "object",
        "description": f"Send the rows under exactly one of {', '.join(k for k in FORMATS if k in properties)}; "
        f"{described}.",
        "properties": properties,
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
    }


def _value(tensor: Tensor) -> dict[str, Any]:
    return {"type": "string"} if tensor.strings else value_schema(tensor.dtype)


def _row(tensor: Tensor) -> dict[str, Any]:
    """One row of an input: nested arrays of its shape (a bare value for shape [-1, 1] too)."""
    row = _value(tensor)
    for size in reversed(tensor.shape):
        row = {"type": "array", "items": row, "minItems": size, "maxItems": size}
    return {"anyOf": [row, _value(tensor)]} if tensor.shape == (1,) else row


def _array(items: dict[str, Any], max_rows: int) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "maxItems": max_rows, "items": items}


def _record(properties: dict[str, Any]) -> dict[str, Any]:
    """An object of exactly these names."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _one_input(contract: ModelContract, max_rows: int) -> dict[str, Any]:
    tensor, names = contract.input, contract.feature_names
    rows = _array(_row(tensor), max_rows)
    if names:  # rows as lists, or every row an object of the feature names
        record = _record({name: _value(tensor) for name in names})
        rows = {"anyOf": [rows, _array(record, max_rows)]}
    properties: dict[str, Any] = {
        "instances": rows | {"description": "Rows of the model's input."},
        "inputs": {"anyOf": [rows, _record({tensor.name: rows})]}
        | {
            "description": f"The same as instances (MLflow's name), or under the input's name {tensor.name!r}."
        },
    }
    if names:
        properties["dataframe_records"] = _array(record, max_rows) | {
            "description": "Rows keyed by feature name."
        }
        properties["dataframe_split"] = _split(names, _value(tensor), max_rows)
    return properties


def _named_inputs(contract: ModelContract, max_rows: int) -> dict[str, Any]:
    record = _record({t.name: _row(t) for t in contract.inputs})
    properties: dict[str, Any] = {
        "inputs": _record({t.name: _array(_row(t), max_rows) for t in contract.inputs})
        | {"description": "Each input's rows, by its name; every input the same number of rows."},
        "instances": _array(record, max_rows)
        | {"description": "Rows, each an object of every input's value."},
    }
    if contract.scalar_columns:
        properties["dataframe_records"] = _array(record, max_rows) | {
            "description": "Rows keyed by input name."
        }
    if contract.uniform_columns:
        names = [t.name for t in contract.inputs]
        properties["dataframe_split"] = _split(names, _row(contract.input), max_rows)
    return properties


def _split(names: Sequence[str], cell: dict[str, Any], max_rows: int) -> dict[str, Any]:
    """pandas' split orient: rows of one cell a column, in the columns' order (each name once), else the model's."""
    row = {"type": "array", "items": cell, "minItems": len(names), "maxItems": len(names)}
    columns = {"type": "string", "enum": list(names)}
    return _record(
        {
            "columns": {"type": "array", "items": columns, "minItems": len(names), "maxItems": len(names)}
            | {"uniqueItems": True},
            "data": _array(row, max_rows),
            "index": {"description": "Row labels, not read."},
        }
    ) | {"required": ["data"], "description": "Columns and rows, as pandas' split orient."}
