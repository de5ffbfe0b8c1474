"""`POST /feedback`: the true label or value of answered rows, by the request's id, stored beside its record.

    {"labels": [{"id": "<X-Request-ID or job id>", "row": 0, "label": 3}, ...]}

`row` is the row of the request (default 0, the first); `output` names the output for a model of several
(default: its only output). A label is what the output answers: a class index or a class name (classifiers),
a list of them (multi-label), a number or a list of the output's values (regressions). A label sent again for
the same row replaces the first (each is stored under its id, row and output), so a client may retry.
Answers 200 `{"stored": n}`; 422 names the label at fault, and nothing of the request is stored; 503 when the
store is down (nothing, or part, was stored: send it again, labels are idempotent).

Labels are checked against the served contract (a follower switches only between versions of one contract);
whether a label's request was recorded is the monitor's to say (`python -m pipeline monitor`), as a record may
still be in a worker's buffer when its label arrives.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, Strict, StrictFloat, StrictInt, StrictStr, create_model
from pymongo import UpdateOne
from pymongo.errors import PyMongoError
from pymongo.write_concern import WriteConcern

from service.evidence.records import LABELS, store_client
from service.http.error_shape import error_document, is_json_syntax_error, validation_document
from service.models.contract import ModelContract, Output
from service.settings import EvidenceSettings

Scalar = StrictInt | StrictFloat | StrictStr
RequestId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: RequestId
    row: int = Field(default=0, ge=0, le=1_000_000)
    output: str | None = Field(default=None, max_length=200)
    label: Scalar | Annotated[list[Scalar], Field(max_length=10_000)]


class BadLabel(ValueError):
    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(message)
        self.loc = ["body", "labels", index, field]


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[Label] = Field(min_length=1, description="The labels, at most MAX_LABELS a request.")


def body_model(contract: ModelContract | None) -> type[BaseModel]:
    """The body `POST /feedback` takes for `contract`, as exact as its document can say it (each output's labels:
    class indices in range or class names, lists of them, numbers of the output's width; the output named when
    there are several), so that a client generated from the document sends only labels the route stores. Without
    a contract (none stored when the service was defined), any label, checked when it arrives."""
    if contract is None:
        return Feedback
    kinds = []
    for i, output in enumerate(contract.outputs):
        named: Any = Literal[output.name]
        kinds.append(
            create_model(
                f"Label{i}" if len(contract.outputs) > 1 else "Label",
                __config__=ConfigDict(extra="forbid"),
                id=(RequestId, ...),
                row=(Annotated[int, Strict()], Field(default=0, ge=0, le=1_000_000)),
                output=(named, None) if contract.single_output else (named, ...),  # omitted, or named
                label=(_label_type(output), ...),
            )
        )
    label: Any = kinds[0] if len(kinds) == 1 else Annotated[_union(kinds), Field(discriminator="output")]
    return create_model(
        "Feedback",
        __config__=ConfigDict(extra="forbid"),
        labels=(list[label], Field(min_length=1, description="The labels, at most MAX_LABELS a request.")),
    )


def _union(kinds: list[Any]) -> Any:
    return functools.reduce(operator.or_, kinds)


def _label_type(output: Output) -> Any:
    if output.task == "regression":
        number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
        width = max(1, output.tensor.width)
        if output.tensor.shape in ((), (1,)):
            return number
        return Annotated[list[number], Field(min_length=width, max_length=width)]
    n = output.n_classes or 0
    index: Any = Annotated[int, Strict(), Field(ge=0, le=max(0, n - 1))]
    one: Any = index | Literal[tuple(output.class_names)] if output.class_names else index
    if output.task == "multilabel":
        return Annotated[list[one], Field(max_length=10_000)]
    return one


def feedback_app(settings: EvidenceSettings, contract: ModelContract | None = None) -> FastAPI:
    """The app, mounted at /feedback, its body made for `contract` (`body_model`); `serve(app, contract)` tells
    it the served contract."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = store_client(settings)
        database = client.get_database(settings.mongo_database)
        app.state.labels = database.get_collection(LABELS, write_concern=WriteConcern(w=1, j=True))
        app.state.indexed = False
        try:
            yield
        finally:
            client.close()

    app = FastAPI(title="feedback", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if is_json_syntax_error(errors):
            return JSONResponse(error_document(400, "the body is not valid JSON"), 400)
        return JSONResponse(validation_document(errors), 422)

    def send_feedback(body: Feedback, request: Request) -> JSONResponse:
        """The true labels (classifiers) or values (regressions) of answered rows, by request id and row."""
        if len(body.labels) > settings.max_labels:
            detail = f"at most {settings.max_labels} labels a request (MAX_LABELS); send the rest in another"
            return JSONResponse(error_document(422, detail, loc=("body", "labels")), 422)
        contract: ModelContract = request.app.state.contract()
        try:
            writes = [_write(contract, i, label) for i, label in enumerate(body.labels)]
        except BadLabel as exc:
            error = {"loc": exc.loc, "msg": str(exc), "type": "invalid_label"}
            return JSONResponse(error_document(422, str(exc), [error]), 422)
        labels = request.app.state.labels
        try:
            if not request.app.state.indexed:
                labels.create_index("request_id")
                labels.create_index("at", expireAfterSeconds=settings.evidence_retention_s)
                request.app.state.indexed = True
            labels.bulk_write(writes, ordered=False)
        except PyMongoError:
            detail = "label store unavailable; send the labels again (a label sent twice is stored once)"
            return JSONResponse(error_document(503, detail), 503)
        return JSONResponse({"stored": len(writes)})

    send_feedback.__annotations__["body"] = body_model(contract)  # a class made here: FastAPI reads it as is
    app.post("/", status_code=200)(send_feedback)
    return app


def serve(app: FastAPI, contract: Callable[[], ModelContract]) -> None:
    app.state.contract = contract


def _write(contract: ModelContract, index: int, label: Label) -> UpdateOne:
    output = _output(contract, index, label.output)
    value = stored_label(output, label.label, index)
    return UpdateOne(
        {"_id": f"{label.id}/{label.row}/{output.name}"},
        {
            "$set": {"request_id": label.id, "row": label.row, "output": output.name, "label": value},
            "$currentDate": {"at": True},
        },
        upsert=True,
    )


def _output(contract: ModelContract, index: int, name: str | None) -> Output:
    if name is None:
        if not contract.single_output:
            names = ", ".join(repr(o.name) for o in contract.outputs)
            raise BadLabel(index, "output", f"labels[{index}]: name the output, one of {names}")
        return contract.output
    for output in contract.outputs:
        if output.name == name:
            return output
    names = ", ".join(repr(o.name) for o in contract.outputs)
    raise BadLabel(index, "output", f"labels[{index}]: no output {name[:60]!r}; the model's: {names}")


def stored_label(output: Output, label: Any, index: int = 0) -> Any:
    """The label as stored: a class index, a sorted list of class indices, or the value(s) as floats."""
    where = f"labels[{index}].label"
    if output.task == "regression":
        width = max(1, output.tensor.width)
        values = label if isinstance(label, list) else [label]
        if len(values) != width or not all(_number(v) for v in values):
            raise BadLabel(index, "label", f"{where}: {width} number(s) for output {output.name!r}")
        return float(values[0]) if output.tensor.shape in ((), (1,)) else [float(v) for v in values]
    if output.task == "multilabel":
        if not isinstance(label, list):
            raise BadLabel(index, "label", f"{where}: a list of the classes that are on")
        return sorted({_class(output, value, where, index) for value in label})
    if isinstance(label, list):
        raise BadLabel(index, "label", f"{where}: one class, an index or a name")
    return _class(output, label, where, index)


def _class(output: Output, value: Any, where: str, index: int) -> int:
    n = output.n_classes or 0
    names = output.class_names
    if isinstance(value, str):
        if names is not None and value in names:
            return names.index(value)
        known = f"one of {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}" if names else "no names"
        raise BadLabel(index, "label", f"{where}: no class {value[:60]!r} ({known})")
    if isinstance(value, int) and 0 <= value < n:
        return value
    raise BadLabel(index, "label", f"{where}: a class index in [0, {n - 1}] or a class name")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
