"""Every error the service answers is JSON with a `detail` message, BentoML's own routing errors included, and
input that parses but breaks the rules is a 422 on every route.

The outer (BentoML) Starlette app answers an unknown path or method with Starlette's plain-text 404/405 ("Not
Found"), and no exception handler can be added to it; this ASGI middleware rewrites such plain-text error
answers (status 400 and above) as `{"detail": "<the text>"}`.

BentoML answers every validation error of an API's input (`/predict`) with 400, where the job API, like
FastAPI, answers 422 (Unprocessable Content): its 400s whose errors are not all malformed JSON (`json_invalid`)
become 422, body unchanged. A body that is not JSON stays a 400. Other answers pass untouched.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class JsonErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_json_errors(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and (
                (message["status"] >= 400 and _is_text(message)) or message["status"] == 400
            ):
                start = message  # held until the body is complete
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status = start["status"]
            if not _is_text(start):
                body = b"".join(chunks)
                await send({**start, "status": 422 if _unprocessable(body) else status})
                await send({"type": "http.response.body", "body": body})
                return
            text = b"".join(chunks).decode(errors="replace").strip()
            body = json.dumps({"detail": text or _phrase(status)}).encode()
            headers = [
                (key, value)
                for key, value in start.get("headers", [])
                if key.lower() not in (b"content-type", b"content-length")
            ]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_json_errors)


def _is_text(start: Message) -> bool:
    for key, value in start.get("headers", []):
        if key.lower() == b"content-type":
            return bytes(value).startswith(b"text/plain")
    return True  # no content type: not JSON either


def _unprocessable(body: bytes) -> bool:
    """A validation error answer (pydantic's error list under `detail`) about anything but malformed JSON."""
    try:
        errors = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return False
    if not isinstance(errors, list) or not errors or not all(isinstance(error, dict) for error in errors):
        return False
    return any(error.get("type") != "json_invalid" for error in errors)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"error {status}"
