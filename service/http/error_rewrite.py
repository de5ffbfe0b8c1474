"""ASGI middleware: every error answer is the one JSON shape of service.http.error_shape, BentoML's own included,
and input that parses but breaks the rules is a 422 on every route.

- Starlette's plain-text 404/405 ("Not Found") of the outer BentoML app, which takes no exception handler,
  become `{"detail": "Not Found", "errors": [{"loc": ["path"], ...}]}`.
- BentoML answers every validation error of an API's input (`/predict`) with 400 and
  `{"error": ..., "detail": [pydantic errors]}`: that becomes the one shape, status 422, unless the body was not
  JSON at all (`json_invalid`: it stays a 400).
- Any other JSON error that is not in the shape (`{"error": "..."}`) is rewritten the same way.
Answers below 400 pass untouched, and so do errors already in the shape (the job API's, the access checks').
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.error_shape import error_document, is_json_syntax_error, validation_document


class JsonErrors:
    def __init__(self, app: ASGIApp, protocol_prefix: str | None = None) -> None:
        """`protocol_prefix`: the paths of a protocol with an error shape of its own (the Open Inference
        Protocol's `{"error": "..."}`), which their errors are given in instead."""
        self.app = app
        self.protocol_prefix = protocol_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        protocol = self.protocol_prefix is not None and scope["path"].startswith(self.protocol_prefix)

        async def send_json_errors(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the body is complete
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, document = _normalised(start["status"], b"".join(chunks), _is_text(start), protocol)
            body = json.dumps(document).encode()
            headers = [
                (key, value)
                for key, value in start.get("headers", [])
                if key.lower() not in (b"content-type", b"content-length")
            ]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({**start, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_json_errors)


def _normalised(status: int, body: bytes, text: bool, protocol: bool) -> tuple[int, dict[str, Any]]:
    if not protocol:
        return _in_shape(status, body, text)
    found = None if text else _json(body)
    if isinstance(found, dict) and isinstance(found.get("error"), str) and len(found) == 1:
        return status, found  # already the protocol's
    status, document = _in_shape(status, body, text)
    return status, {"error": document["detail"]}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _in_shape(status: int, body: bytes, text: bool) -> tuple[int, dict[str, Any]]:
    if text:
        return status, error_document(status, body.decode(errors="replace").strip() or _phrase(status))
    found = _json(body)
    if not isinstance(found, dict):
        return status, error_document(status, _phrase(status))
    if isinstance(found.get("detail"), str) and isinstance(found.get("errors"), list) and found["errors"]:
        return status, found  # already the one shape
    detail = found.get("detail")
    if (
        isinstance(detail, list)
        and detail
        and all(isinstance(error, dict) and "type" in error for error in detail)
    ):
        if is_json_syntax_error(detail):
            return 400, error_document(400, "the body is not valid JSON")
        return (422 if status == 400 else status), validation_document(detail)
    if isinstance(detail, list):  # BentoML's `({"error": "..."},)` for its own 4xx exceptions
        detail = next((e.get("error") for e in detail if isinstance(e, dict) and e.get("error")), None)
    message = detail if isinstance(detail, str) else found.get("error")
    return status, error_document(status, str(message) if message else _phrase(status))


def _is_text(start: Message) -> bool:
    for key, value in start.get("headers", []):
        if key.lower() == b"content-type":
            return not bytes(value).startswith(b"application/json")
    return True  # no content type: not JSON either


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"error {status}"
