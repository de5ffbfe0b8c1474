"""The one shape of every error answer, on every route:

    {"detail": "<what is wrong, one short message>", "errors": [{"loc": [...], "msg": "...", "type": "..."}]}

`errors` has at least one entry. Its `loc` starts with the part of the request at fault, then where in it:
`["body"]` (with the field's path when a field is at fault), `["header", "Content-Type"]`, `["path", "job_id"]`,
`["path"]` (no such route), `["method"]`; it is empty when the error is not about the request (503, 504).
Messages are capped, and no error carries the request's input back: an error is never larger than a few
kilobytes, whatever was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.types import Send

MAX_MESSAGE = 500
MAX_ERRORS = 5
PARTS = ("body", "header", "path", "query", "method")  # where in the request an error's `loc` points
# By status, when the error names no field of its own: its type and where it points.
KINDS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("invalid_json", ("body",)),
    401: ("unauthorized", ("header", "Authorization")),
    404: ("not_found", ("path",)),
    405: ("method_not_allowed", ("method",)),
    413: ("too_large", ("body",)),
    415: ("unsupported_media_type", ("header", "Content-Type")),
    422: ("invalid_request", ("body",)),
    503: ("unavailable", ()),
    504: ("timeout", ()),
}


ERROR_SCHEMA_NAME = "Error"
ERROR_SCHEMA: dict[str, Any] = {  # the shape, as the OpenAPI document states it
    "type": "object",
    "required": ["detail", "errors"],
    "additionalProperties": False,
    "properties": {
        "detail": {
            "type": "string",
            "maxLength": MAX_MESSAGE,
            "description": "What is wrong, in one message.",
        },
        "errors": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ERRORS,
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "additionalProperties": False,
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        "description": f"Where: one of {', '.join(PARTS)} first, then the field; empty when the "
                        "error is not about the request.",
                    },
                    "msg": {"type": "string", "maxLength": MAX_MESSAGE},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


def error_response(description: str) -> dict[str, Any]:
    """An error answer in the OpenAPI document (its schema added by `with_error_schema`)."""
    schema = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def with_error_schema(document: dict[str, Any]) -> dict[str, Any]:
    document.setdefault("components", {}).setdefault("schemas", {})[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    return document


def error_document(
    status: int, detail: str, errors: Iterable[dict[str, Any]] = (), loc: Sequence[str | int] | None = None
) -> dict[str, Any]:
    """The error answer for `status`; without `errors`, one entry made of the detail, at `loc` (default: where an
    error of that status points)."""
    shown = [_field_error(error) for error in list(errors)[:MAX_ERRORS]]
    if not shown:
        kind, where = KINDS.get(status, ("error", ()))
        shown = [{"loc": list(where if loc is None else loc), "msg": _cap(detail), "type": kind}]
    return {"detail": _cap(detail), "errors": shown}


def validation_document(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Pydantic's (or FastAPI's) error list as the one shape: each `loc` in the request's terms (a body model's
    own errors point at the body), the detail joins the first messages."""
    shown = [_field_error(error, body=True) for error in errors[:MAX_ERRORS]]
    detail = "; ".join(_located(error) for error in shown) or "invalid request"
    if len(errors) > MAX_ERRORS:
        detail += f"; and {len(errors) - MAX_ERRORS} more"
    return error_document(422, detail, shown)


def is_json_syntax_error(errors: list[dict[str, Any]]) -> bool:
    return bool(errors) and all(isinstance(e, dict) and e.get("type") == "json_invalid" for e in errors)


async def send_error(
    send: Send,
    status: int,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    loc: Sequence[str | int] | None = None,
) -> None:
    body = json.dumps(error_document(status, detail, loc=loc)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _field_error(error: dict[str, Any], body: bool = False) -> dict[str, Any]:
    loc = [part for part in error.get("loc", ()) if isinstance(part, (str, int))][:8]
    if body and (not loc or loc[0] not in PARTS):
        loc = ["body", *loc][:8]
    kind = str(error.get("type", "invalid"))[:60]
    return {"loc": loc, "msg": _cap(str(error.get("msg") or kind)), "type": kind}


def _located(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"] if part not in PARTS)
    return f"{where}: {error['msg']}" if where else error["msg"]


def _cap(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
