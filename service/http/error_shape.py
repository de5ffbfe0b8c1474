"""The one shape of every error answer, on every route:

    {"detail": "<what is wrong, one short message>", "errors": [{"loc": [...], "msg": "...", "type": "..."}]}

`errors` lists the fields at fault (empty when the error is not about a field). Messages are capped, and no
error carries the request's input back: an error is never larger than a few kilobytes, whatever was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.types import Send

MAX_MESSAGE = 500
MAX_ERRORS = 5


def error_document(detail: str, errors: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"detail": _cap(detail), "errors": [_field_error(error) for error in list(errors)[:MAX_ERRORS]]}


def error_bytes(detail: str, errors: Iterable[dict[str, Any]] = ()) -> bytes:
    return json.dumps(error_document(detail, errors)).encode()


def validation_document(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Pydantic's (or FastAPI's) error list as the one shape: the detail joins the first messages."""
    shown = [_field_error(error) for error in errors[:MAX_ERRORS]]
    detail = "; ".join(_located(error) for error in shown) or "invalid request"
    if len(errors) > MAX_ERRORS:
        detail += f"; and {len(errors) - MAX_ERRORS} more"
    return {"detail": _cap(detail), "errors": shown}


def is_json_syntax_error(errors: list[dict[str, Any]]) -> bool:
    return bool(errors) and all(isinstance(e, dict) and e.get("type") == "json_invalid" for e in errors)


async def send_error(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = error_bytes(detail)
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


def _field_error(error: dict[str, Any]) -> dict[str, Any]:
    loc = [part for part in error.get("loc", ()) if isinstance(part, (str, int))][:8]
    kind = str(error.get("type", "invalid"))[:60]
    return {"loc": loc, "msg": _cap(str(error.get("msg") or kind)), "type": kind}


def _located(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"] if part != "body")
    return f"{where}: {error['msg']}" if where else error["msg"]


def _cap(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
