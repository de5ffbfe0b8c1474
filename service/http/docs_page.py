"""The OpenAPI page at `/` and `/docs`, and the OpenAPI document at `/docs.json` rewritten on its way out
(service.http.openapi: this project's, and true).

BentoML's stock page loads a tag manager and badges from other hosts and calls the service "nbship:dev",
version "None". This ASGI middleware (outside the key check: the page and the document are open) answers the
page itself: Swagger UI from the files BentoML's package ships, served under `/docs/assets/`, with a
Content-Security-Policy that lets the browser load nothing but this service's own files. Nothing is fetched at
run time from anywhere else, so the page works behind a firewall and tells no third party who reads it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.http.access import DOCUMENT_PATH, rewriting_json
from service.http.openapi import TITLE, Served, describe

PAGE_PATHS = frozenset({"/", "/docs", "/docs/"})
ASSETS = "/docs/assets/"

# Swagger UI as BentoML's package ships it (bentoml/_internal/server/static_content).
_SWAGGER_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-light-32x32.png"})

# The browser may load this service's own files and nothing else (Swagger UI sets inline styles).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _page(served: Served) -> str:
    title = html.escape(f"{TITLE}: {served.name} {served.version}")
    return f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{title}</title>
    <link rel="stylesheet" href="{ASSETS}swagger-ui.css">
    <link rel="stylesheet" href="{ASSETS}nbship-docs.css">
    <link rel="icon" type="image/png" href="{ASSETS}favicon-light-32x32.png">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="{ASSETS}swagger-ui-bundle.js"></script>
    <script src="{ASSETS}nbship-docs.js"></script>
  </body>
</html>
"""


# validatorUrl null: Swagger UI would otherwise fetch a badge from validator.swagger.io.
_SCRIPT = f"""window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{
    url: "{DOCUMENT_PATH}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  }});
}});
"""

_STYLE = """body { margin: 0; background: #fafafa; }
.swagger-ui .info { margin: 30px 0 10px; }
"""

_OWN_FILES = {
    "nbship-docs.js": (_SCRIPT, "text/javascript"),
    "nbship-docs.css": (_STYLE, "text/css"),
}


class DocsPage:
    """Answers the OpenAPI page and its files; rewrites the OpenAPI document on its way out."""

    def __init__(
        self, app: ASGIApp, served: Callable[[], Served], swagger: Path, task: str | None = None
    ) -> None:
        """`swagger`: the folder of Swagger UI's files (service.serving.bentoml_files.swagger_dir)."""
        self.app = app
        self._served = served  # resolved at the first request: the stored model is not read at definition
        self._task = task
        self._swagger = swagger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == DOCUMENT_PATH:
            served = self._served()
            await self.app(
                scope, receive, rewriting_json(send, lambda document: describe(document, served, self._task))
            )
            return
        response = self._answer(path)
        if response is None:
            await self.app(scope, receive, send)
            return
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        await response(scope, receive, send)

    def _answer(self, path: str) -> Response | None:
        if path in PAGE_PATHS:
            return Response(_page(self._served()), media_type="text/html")
        name = path.removeprefix(ASSETS) if path.startswith(ASSETS) else None
        if name in _OWN_FILES:
            content, media_type = _OWN_FILES[name]
            return Response(content, media_type=media_type)
        if name in _SWAGGER_FILES:
            return FileResponse(self._swagger / name)
        return None
