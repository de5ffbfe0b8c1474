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

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
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


def feedback_app(settings: EvidenceSettings) -> FastAPI:
    """The app, mounted at /feedback; `serve(app, contract)` tells it the served contract."""

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

    @app.post("/", status_code=200)
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
