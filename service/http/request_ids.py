"""Every answer carries its request's id: `X-Request-ID`, the client's own when it sent one, else a new one.

The id is what a record of the request is kept under (service/evidence/records.py) and what `POST /feedback`
labels it by. An ASGI middleware for the outer app: it sets the id in the request's context (`request_id()`,
read by the code that records the answer) and adds the header to every answer, errors included. A client's id
must be 1 to 128 characters of letters, digits and `._:-` (a UUID, a trace id); anything else is a 400.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.error_shape import send_error

HEADER = b"x-request-id"
_VALID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_current: ContextVar[str] = ContextVar("nbship_request_id", default="")


def request_id() -> str:
    """The id of the request being answered ("" outside a request)."""
    return _current.get()


def new_id() -> str:
    return uuid.uuid4().hex


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = _sent_id(scope)
        if sent is not None and not _VALID.fullmatch(sent):
            await send_error(
                send,
                400,
                "X-Request-ID must be 1 to 128 letters, digits, '.', '_', ':' or '-'",
                [(HEADER, new_id().encode())],  # this answer's own id: the one sent is not an id
                loc=("header", "X-Request-ID"),
            )
            return
        ident = sent.decode() if sent is not None else new_id()
        _current.set(ident)
        header = (HEADER, ident.encode())

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        await self.app(scope, receive, with_id)


def _sent_id(scope: Scope) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == HEADER:
            return bytes(value)
    return None
