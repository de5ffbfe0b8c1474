"""Who may call the service and how much they may send: two ASGI middlewares for the outer (BentoML) app.

`RequireKey` (only when `API_KEYS` names keys): every route but health, readiness, metrics and the OpenAPI
document and page needs `Authorization: Bearer <key>`; missing or wrong is a 401 JSON error. The caller's key
NAME goes into the ASGI scope (`caller`), where the job app reads its owner; the key itself is never stored,
logged or echoed. The served OpenAPI document gets the bearer scheme and the 401 answer of each guarded route.

`LimitBody`: a body larger than `MAX_BODY_BYTES` is a 413 JSON error, judged on Content-Length when there is
one (the server reads no more than it says) and otherwise counted as the chunks arrive, never buffering more
than the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.error_shape import error_response, send_error, with_error_schema
from service.settings import ApiKey

CALLER = "nbship.caller"  # scope key: the name of the API key that authenticated the request
OPEN_PATHS = frozenset(
    {"/", "/docs", "/docs/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json"}
    | {"/hooks/mlflow"}  # authenticated by its HMAC signature (service.models.webhook), not by an API key
    | {"/v2/health/live", "/v2/health/ready"}  # the Open Inference Protocol's probes
)
OPEN_PREFIXES = ("/static_content/", "/assets/", "/docs/assets/")  # the OpenAPI page's files
DOCUMENT_PATH = "/docs.json"
SCHEME = "bearer"  # its name in the OpenAPI document


def caller(scope: Scope) -> str:
    """The name of the key that authenticated the request; "" when the service runs without keys."""
    name: str = scope.get(CALLER, "")
    return name


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class RequireKey:
    """401 unless `Authorization: Bearer <key>` names one of `keys` (open paths excepted)."""

    def __init__(self, app: ASGIApp, keys: Iterable[ApiKey]) -> None:
        self.app = app
        # Digests: every comparison is over 32 bytes, whatever the length of what was sent.
        self._digests = [(k.name, _digest(k.key.get_secret_value().encode())) for k in keys]
        if not self._digests:
            raise ValueError("RequireKey needs at least one key")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if is_open(path):
            if path == DOCUMENT_PATH:
                send = rewriting_json(send, document_security)
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        name = None if token is None else self._match(token)
        if name is not None:
            await self.app({**scope, CALLER: name}, receive, send)
        elif scope["type"] == "websocket":  # none served today; refused all the same
            await send({"type": "websocket.close", "code": 1008})
        elif token is None:
            await send_error(send, 401, "missing API key: send `Authorization: Bearer <key>`", _CHALLENGE)
        else:
            await send_error(send, 401, "invalid API key", _CHALLENGE_INVALID)

    def _match(self, token: bytes) -> str | None:
        """Compares with every key, so the time taken does not tell which key (or whether one) matched."""
        digest = _digest(token)
        found = None
        for name, expected in self._digests:
            if hmac.compare_digest(digest, expected):
                found = name
        return found


class LimitBody:
    """413 for a request body over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None:  # the server reads exactly this many bytes: nothing to count
            if length > self.max_bytes:
                await self._refuse(send)
            else:
                await self.app(scope, receive, send)
            return
        # Chunked: read the body here, up to the limit, then hand it on as one message. The app reads a whole
        # body before it starts anyway (JSON), so this holds no more than it would.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, send: Send) -> None:
        await send_error(send, 413, f"request body too large: at most {self.max_bytes} bytes")


def document_security(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the bearer scheme, required by (and a 401 documented on) each guarded route."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from the service's API_KEYS setting.",
    }
    with_error_schema(document)
    unauthorized = error_response("Missing or invalid API key.")
    for path, item in document.get("paths", {}).items():
        if is_open(path):
            continue
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["security"] = [{SCHEME: []}]
                operation["responses"].setdefault("401", unauthorized)
    return document


_CHALLENGE = [(b"www-authenticate", b"Bearer")]
_CHALLENGE_INVALID = [(b"www-authenticate", b'Bearer error="invalid_token"')]


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


def _bearer_token(scope: Scope) -> bytes | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return token


def _content_length(scope: Scope) -> int | None:
    if _header(scope, b"transfer-encoding") is not None:
        return None
    value = _header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body in one message, then the server's own messages (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def rewriting_json(send: Send, transform: Callable[[dict[str, Any]], dict[str, Any]]) -> Send:
    """A send that passes a JSON answer (the OpenAPI document: a few kB, buffered) through `transform`."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def documented(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        if start["status"] == 200:
            body = json.dumps(transform(json.loads(body))).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return documented
