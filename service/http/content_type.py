"""ASGI middleware: the routes that take rows take JSON only. Another Content-Type is a 415 before the body is
read (BentoML would otherwise pick a multipart or pickle parser by it). No Content-Type is read as JSON."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from service.http.error_shape import send_error


def is_json(media_type: str) -> bool:
    media_type = media_type.split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class RequireJson:
    def __init__(self, app: ASGIApp, paths: Sequence[str]) -> None:
        self.app = app
        self.paths = tuple(path.rstrip("/") for path in paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self._guarded(scope["path"]):
            content_type = next((value for key, value in scope["headers"] if key == b"content-type"), None)
            if content_type is not None and not is_json(content_type.decode("latin-1")):
                shown = content_type.decode("latin-1").split(";")[0].strip()[:60]
                await send_error(send, 415, f"Content-Type {shown!r} is not supported; send application/json")
                return
        await self.app(scope, receive, send)

    def _guarded(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.paths)
