"""Request and response shapes of the service, made from the served model's contract when the service is defined,
so the OpenAPI document shows the real input shape and answer.

Requests are checked per request, before adaptive batching merges them, so an error names the row and field of
the request that sent it (service.http.rows). A check's error is a pydantic error: BentoML answers it with 400,
turned into the service's one error shape and status 422 by service.http.error_rewrite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from service.http.rows import FORMATS, RequestError, RowRules
from service.models.contract import ModelContract

ROW_FIELDS = ("predictions", "classes", "probabilities")  # columnar answers: entry i belongs to row i


class ServedModel(BaseModel):
    name: str
    version: str


def answer_model(contract: ModelContract | None) -> type[BaseModel]:
    """The answer of /predict (and a job's result, with the model): one entry per row in each list."""
    served = (ServedModel, Field(description="The registered model and version that answered."))
    if contract is None:  # the service is defined without its model (a build's import): a permissive answer
        return create_model("Answer", model=served, predictions=(list[Any], ...))
    if contract.task == "regression":
        values = list[float] if contract.output.shape in ((), (1,)) else list[list[float]]
        return create_model(
            "RegressionAnswer",
            model=served,
            predictions=(values, Field(description="The model's values per row.")),
        )
    fields: dict[str, Any] = {
        "model": served,
        "predictions": (list[int], Field(description="Predicted class index of each row.")),
    }
    if contract.class_names is not None:
        fields["classes"] = (list[str], Field(description="Predicted class name of each row."))
    fields["probabilities"] = (
        list[list[float]],
        Field(description=f"Probabilities of the {contract.n_classes} classes, per row."),
    )
    return create_model("ClassificationAnswer", **fields)


def request_model(name: str, rules: RowRules, contract: ModelContract | None) -> type[BaseModel]:
    """A request body in any of the formats (service.requests), parsed into `instances` of the model's shape."""

    class Rows(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)

        instances: np.ndarray

        @model_validator(mode="before")
        @classmethod
        def _parse(cls, data: Any) -> Any:
            if (
                isinstance(data, dict)
                and list(data) == ["instances"]
                and isinstance(data["instances"], np.ndarray)
            ):
                return {"instances": rules.rows(data["instances"])}  # an in-process caller
            try:
                return {"instances": rules.body(data)}
            except RequestError as exc:
                # The message goes in the context: braces in it must not be read as a template.
                raise PydanticCustomError("invalid_request", "{reason}", {"reason": str(exc)}) from None

        @classmethod
        def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
            return request_schema(name, contract, rules.max_rows)  # the parsed array has none; the body has

    Rows.__name__ = Rows.__qualname__ = name
    return Rows


def value_schema(dtype: np.dtype) -> dict[str, Any]:
    """One value of the model's input as JSON may carry it: a number within the dtype's range (a whole number
    for an integer dtype), as the rows' check accepts it (service.http.rows)."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    largest = float(np.finfo(dtype).max)
    return {"type": "number", "minimum": -largest, "maximum": largest}


def request_schema(title: str, contract: ModelContract | None, max_rows: int) -> dict[str, Any]:
    """The request body in the OpenAPI document: exactly one of the formats, rows of the model's real shape."""
    value = value_schema(contract.input.dtype) if contract else {"type": "number"}
    row: dict[str, Any] = value
    for size in reversed(contract.input.shape if contract else (0,)):
        row = {"type": "array", "items": row} | (
            {"minItems": size, "maxItems": size} if size else {"minItems": 1}
        )
    rows = {"type": "array", "minItems": 1, "maxItems": max_rows, "items": row}
    properties: dict[str, Any] = {
        "instances": rows | {"description": "Rows of the model's input."},
        "inputs": rows | {"description": "The same as instances (MLflow's name)."},
    }
    names = contract.feature_names if contract else None
    if names:
        named = {
            "type": "object",
            "properties": {n: value for n in names},
            "required": list(names),
        }
        properties["instances"] = properties["instances"] | {"items": {"anyOf": [row, named]}}
        properties["dataframe_records"] = rows | {
            "items": named,
            "description": "Rows keyed by feature name.",
        }
        properties["dataframe_split"] = {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string", "enum": list(names)}},
                "data": rows,
            },
            "required": ["data"],
            "description": "Columns and rows, as pandas' split orient.",
        }
    shape = f"[-1, {', '.join(map(str, contract.input.shape))}]" if contract else "the model's"
    return {
        "title": title,
        "type": "object",
        "description": f"Send the rows under exactly one of {', '.join(k for k in FORMATS if k in properties)}; "
        f"each row of shape {shape}, {contract.input.dtype.name if contract else 'numbers'}.",
        "properties": properties,
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
    }
