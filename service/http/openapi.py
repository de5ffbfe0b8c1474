"""The OpenAPI document at `/docs.json`, as BentoML and FastAPI generate it, made this project's and true.

- This project's: its title and description, the served model's name and version as its version, one tag per part
  of the API (predict, model, jobs, infrastructure) and a summary per route (the table below, else the first
  sentence of the route's docstring).
- True: every operation documents each status it answers with (`ROUTE_ERRORS`), every error with the one error
  schema it really sends (service.http.error_shape), no 500 (none is answered), and the answers of the job routes;
  a client generated from it, or schemathesis with all its checks (`./noxw -s fuzz`), finds no difference.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from service.http.error_shape import error_response, with_error_schema

TITLE = "nbship prediction service"

# What /predict answers, by the served model's task (None: no model was stored when the service was defined).
ANSWERS = {"classification": "each row's class and class probabilities", "regression": "each row's values"}


def answers(task: str | None) -> str:
    return ANSWERS.get(task or "", "each row's prediction")


def tags(task: str | None) -> list[dict[str, str]]:
    predict = {
        "name": "predict",
        "description": f"{answers(task).capitalize()}, concurrent requests batched.",
    }
    return [predict, *TAGS]


TAGS = [  # after "predict"
    {"name": "model", "description": "The model that answers: registered name, version and lineage."},
    {
        "name": "jobs",
        "description": "The same predictions as durable jobs (RabbitMQ, MongoDB): submit, poll.",
    },
    {"name": "infrastructure", "description": "Health, readiness and Prometheus metrics."},
]
_OUR_TAGS = {tag["name"] for tag in tags(None)}

SUMMARIES = {
    ("get", "/model"): "The served model's name, version and lineage",
    ("post", "/jobs/"): "Submit rows as a job (202 and its id)",
    ("get", "/jobs/{job_id}"): "A job's state, and its result once done",
    ("get", "/livez"): "Liveness: the process answers",
    ("get", "/healthz"): "Liveness (the same as /livez)",
    ("get", "/readyz"): "Readiness: the model is loaded",
    ("get", "/metrics"): "Prometheus metrics",
    ("post", "/hooks/mlflow"): "MLflow's alias webhook (signed): followers ask the registry now",
    ("post", "/feedback/"): "True labels of answered rows, by request id (live accuracy)",
}
_PART_OF = {"hooks": "model", "feedback": "model"}  # paths whose first segment is not their tag


class Served(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


def describe(document: dict[str, Any], served: Served, task: str | None = None) -> dict[str, Any]:
    """The OpenAPI document as this project's: info, tags and a summary on every operation; `task`: the served
    model's, which says what /predict answers."""
    document["info"] = {
        "title": TITLE,
        "version": f"{served.name} {served.version}",
        "description": _description(served, task),
    }
    document["tags"] = tags(task)
    summaries = SUMMARIES | {("post", "/predict"): f"Predict {answers(task)}"}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                operation["tags"] = [_tag(path, operation)]
                operation["summary"] = summaries.get((method, path)) or _first_sentence(operation)
    return truthful(document)


def _description(served: Served, task: str | None) -> str:
    return (
        f"Serves the MLflow registered model **{served.name}** version **{served.version}**, packaged from "
        "its `@champion` alias by nbship (a Keras training notebook run by papermill, tracked and gated in "
        "MLflow, served by BentoML).\n\n"
        f"- `POST /predict`: rows of the model's input features in; {answers(task)} out, with the model "
        "version that answered. Concurrent requests are batched.\n"
        "- `GET /model`: where the served version comes from: run, metrics, training time.\n"
        "- `POST /jobs`, `GET /jobs/{id}`: the same predictions as durable jobs for long or bulk work; "
        "poll by id.\n"
        "- `POST /feedback`: the true labels of answered rows, by the answer's `X-Request-ID` (or job id), for "
        "live accuracy (`python -m pipeline monitor`).\n\n"
        "Every error is JSON with a `detail` message."
    )


def _tag(path: str, operation: dict[str, Any]) -> str:
    first = path.strip("/").split("/")[0]
    first = _PART_OF.get(first, first)
    if first in _OUR_TAGS:
        return first
    return "infrastructure" if "Infrastructure" in operation.get("tags", []) else "predict"


def _first_sentence(operation: dict[str, Any]) -> str:
    text = re.sub(r"<[^>]+>", "", operation.get("description") or "").strip()
    return re.split(r"(?<=\.)\s|\n", text, maxsplit=1)[0].rstrip(".") if text else ""


# The errors each route answers with, besides 504 (any request whose answer has not begun by TIMEOUT_S) and the
# 401 of a guarded route (service.http.access documents it when API keys are set).
ROUTE_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/predict"): (400, 413, 415, 422, 503),
    ("post", "/jobs/"): (400, 409, 413, 415, 422, 503),
    ("get", "/jobs/{job_id}"): (404, 503),
    ("post", "/hooks/mlflow"): (401, 404, 413),
    ("post", "/feedback/"): (400, 413, 415, 422, 503),
    ("get", "/readyz"): (503,),
}
ERROR_MEANINGS = {
    400: "The body is not JSON.",
    401: "A webhook delivery without a valid signature.",
    404: "No such job (or another API key's), or webhooks are off.",
    409: "The Idempotency-Key names a job of other rows.",
    413: "The body is larger than MAX_BODY_BYTES.",
    415: "Another Content-Type than JSON.",
    422: "Rows, labels or a header that break the rules; the message names the row or label and field.",
    503: "Not ready, overloaded (a request queued past MAX_LATENCY_MS) or the job store unreachable.",
    504: "No answer began within TIMEOUT_S.",
}
_JOB = {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "The job's id."}
_STATE = {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]}
# The answers FastAPI cannot see (the job routes answer JSONResponse), described by hand.
ANSWERS_OF: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/jobs/"): {
        "202": {
            "description": "Accepted: the job is journaled, and queued.",
            "headers": {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}},
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["id", "status", "url"],
                        "properties": {"id": _JOB, "status": _STATE, "url": {"type": "string"}},
                    }
                }
            },
        }
    },
    ("get", "/jobs/{job_id}"): {
        "200": {
            "description": "The job: its state, and its result once it succeeded (as /predict answers).",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["id", "status", "n_rows", "attempts", "lease_losses", "timings"],
                        "properties": {
                            "id": _JOB,
                            "status": _STATE,
                            "n_rows": {"type": "integer", "minimum": 1},
                            "attempts": {"type": "integer", "minimum": 0},
                            "lease_losses": {"type": "integer", "minimum": 0},
                            "result": {"type": "object"},
                            "model": {"type": "object"},
                            "error": {"type": "string"},
                            "idempotency_key": {"type": "string"},
                            "timings": {"type": "object"},
                        },
                    }
                }
            },
        }
    },
    ("post", "/hooks/mlflow"): {
        "200": {"description": "Not about the followed alias: nothing to do."},
        "202": {"description": "Every follower on this host asks the registry now."},
    },
    ("get", "/readyz"): {"200": {"description": "The model is loaded: requests are served."}},
    ("post", "/feedback/"): {
        "200": {
            "description": "Stored: each label beside its request's record (a label sent again replaces it).",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["stored"],
                        "properties": {"stored": {"type": "integer", "minimum": 1}},
                    }
                }
            },
        }
    },
}
# What BentoML and FastAPI put in the document for errors this service answers otherwise.
_UNUSED_SCHEMAS = (
    "HTTPValidationError",
    "ValidationError",
    "InvalidArgument",
    "NotFound",
    "InternalServerError",
)


def truthful(document: dict[str, Any]) -> dict[str, Any]:
    """Every operation's answers as the service gives them: its errors in the one shape, no undocumented status,
    none documented that never comes."""
    with_error_schema(document)
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            key = (method, path)
            if "requestBody" in operation:  # every body the service takes is required (BentoML omits it)
                operation["requestBody"]["required"] = True
            # Kept: the successes, and the 401 of a guarded route (service.http.access adds it first).
            kept = {
                code: answer
                for code, answer in operation["responses"].items()
                if int(code) < 400 or code == "401"
            }
            responses = kept
            responses |= ANSWERS_OF.get(key, {})
            for status in (*ROUTE_ERRORS.get(key, ()), 504):
                responses[str(status)] = error_response(ERROR_MEANINGS[status])
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document.get("components", {}).get("schemas", {})
    document["paths"] = _nullable(document.get("paths", {}))
    schemas.update(_nullable(schemas))
    used = set(_refs(document["paths"])) | set(_refs(schemas))
    for name in _UNUSED_SCHEMAS:
        if f"#/components/schemas/{name}" not in used:
            schemas.pop(name, None)
    return document


def _nullable(node: Any) -> Any:
    """FastAPI's `anyOf: [schema, {type: null}]` (JSON Schema's, OpenAPI 3.1's) as OpenAPI 3.0, this document's
    version, says it: the schema, `nullable`. A 3.0 reader (schemathesis, a client generator) refuses `null` as
    a type."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if "const" in node:  # JSON Schema's (a Literal of one value); OpenAPI 3.0 has only `enum`
        node["enum"] = [node.pop("const")]
    alternatives = node.get("anyOf")
    if isinstance(alternatives, list) and {"type": "null"} in alternatives:
        rest = [item for item in alternatives if item != {"type": "null"}]
        del node["anyOf"]
        node = (rest[0] | node if len(rest) == 1 else node | {"anyOf": rest}) | {"nullable": True}
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*([node["$ref"]] if isinstance(node.get("$ref"), str) else []), *_refs(list(node.values()))]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []
