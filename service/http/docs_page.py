"""The OpenAPI page at `/` and `/docs`, and the OpenAPI document at `/docs.json` described as this project's.

BentoML's stock page loads a tag manager and badges from other hosts and calls the service "nbship:dev",
version "None". This ASGI middleware (outside the key check: the page and the document are open) answers the
page itself: Swagger UI from the files BentoML's package ships, served under `/docs/assets/`, with a
Content-Security-Policy that lets the browser load nothing but this service's own files. Nothing is fetched at
run time from anywhere else, so the page works behind a firewall and tells no third party who reads it.

The document BentoML generates gets the project's title and description, the served model's name and version
as its version, one tag per part of the API (predict, model, jobs, infrastructure) and a summary per route:
the table below, else the first sentence of the route's docstring.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.http.access import DOCUMENT_PATH, rewriting_json

PAGE_PATHS = frozenset({"/", "/docs", "/docs/"})
ASSETS = "/docs/assets/"
TITLE = "nbship prediction service"

# Swagger UI as BentoML's package ships it (bentoml/_internal/server/static_content).
_SWAGGER_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-light-32x32.png"})

# The browser may load this service's own files and nothing else (Swagger UI sets inline styles).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

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
}
_PART_OF = {"hooks": "model"}  # paths whose first segment is not their tag


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
    return document


def _description(served: Served, task: str | None) -> str:
    return (
        f"Serves the MLflow registered model **{served.name}** version **{served.version}**, packaged from "
        "its `@champion` alias by nbship (a Keras training notebook run by papermill, tracked and gated in "
        "MLflow, served by BentoML).\n\n"
        f"- `POST /predict`: rows of the model's input features in; {answers(task)} out, with the model "
        "version that answered. Concurrent requests are batched.\n"
        "- `GET /model`: where the served version comes from: run, metrics, training time.\n"
        "- `POST /jobs`, `GET /jobs/{id}`: the same predictions as durable jobs for long or bulk work; "
        "poll by id.\n\n"
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
