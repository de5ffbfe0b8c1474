"""HTTP for jobs: a FastAPI app meant to be mounted at /jobs beside the BentoML APIs.

    POST /jobs        a body as /predict takes it (service.http.rows), optional Idempotency-Key -> 202 {id, status, url}
    GET  /jobs/{id}   queued | running | succeeded (+ result as /predict answers, model, timings) | failed (+ error)

Errors are the service's one JSON shape (service.http.error_shape): 400 a body that is not JSON, 404 unknown or malformed id
(or another API key's job), 409 an idempotency key reused with other instances, 422 invalid rows (the message names the row and field),
503 store down. A job belongs to the API key name that submitted it (`service.http.access.caller`, "" without keys):
only that key sees it, and idempotency keys are per owner.

`served_jobs_app` opens its store and submitter when the app starts (in each server worker process, through the
app's lifespan, which BentoML runs for mounted apps) and closes them when it stops.
"""

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from service.http.access import caller
from service.http.error_shape import error_document, is_json_syntax_error, validation_document
from service.jobs.store import IdempotencyConflict, StoreUnavailable, is_job_id
from service.jobs.submit import JobBackend

IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


def served_jobs_app(
    open_backend: Callable[[], AbstractContextManager[JobBackend]], request: type[BaseModel]
) -> FastAPI:
    """The app for a server: `open_backend` runs when the app starts, in the process that serves it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with open_backend() as backend:
            app.state.jobs = backend
            yield

    return jobs_app(request, lifespan)


def _backend(request: Request) -> JobBackend:
    backend: JobBackend = request.app.state.jobs  # the jobs app itself: Starlette sets scope["app"] per app
    return backend


def jobs_app(
    body_model: type[BaseModel],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    app = FastAPI(title="jobs", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(StoreUnavailable)
    def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        accepted = ", nothing was accepted" if request.method == "POST" else ""
        return JSONResponse(error_document(503, f"job store unavailable{accepted}; retry later"), 503)

    @app.exception_handler(IdempotencyConflict)
    def idempotency_conflict(request: Request, exc: IdempotencyConflict) -> JSONResponse:
        error = {"loc": ["header", "Idempotency-Key"], "msg": str(exc), "type": "idempotency_key_reused"}
        # 409: the request is well-formed, and conflicts with the job the key already names (RFC 9110 15.5.10).
        return JSONResponse(error_document(409, str(exc), [error]), 409)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if is_json_syntax_error(errors):
            return JSONResponse(error_document(400, "the body is not valid JSON"), 400)
        return JSONResponse(validation_document(errors), 422)  # the shape drops the input: never echoed

    # A sync endpoint runs in the server's thread pool: the requests in flight together are written and
    # published as one group (service.jobs.submit.Groups), each answered once its job is journaled.
    @app.post("/", status_code=202)
    def submit_job(
        body: body_model,  # type: ignore[valid-type]
        request: Request,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Queue a prediction job over the rows; answers at once with its id (202). The same
        Idempotency-Key with the same rows returns the same job."""
        rows = body.rows  # type: ignore[attr-defined]
        job = _backend(request).submitter.submit(rows, idempotency_key, owner=caller(request.scope))
        url = request.url_for("get_job", job_id=job.id).path
        return JSONResponse({"id": job.id, "status": job.status, "url": url}, 202, headers={"Location": url})

    @app.get("/{job_id}", name="get_job")
    def get_job(job_id: str, request: Request) -> JSONResponse:
        """The job's state: queued, running, succeeded (with the result and the model that made it) or failed."""
        store = _backend(request).store
        document = store.get(job_id, caller(request.scope)) if is_job_id(job_id) else None
        if document is None:
            return JSONResponse(error_document(404, f"no job {job_id[:80]!r}", loc=("path", "job_id")), 404)
        return JSONResponse(job_view(document))

    return app


def job_view(document: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": document["_id"],
        "status": document["status"],
        "n_rows": document["n_rows"],
        "attempts": document.get("attempts", 0),  # prediction attempts (the running one included)
        "lease_losses": document.get("lease_losses", 0),  # leases lost with a worker
    }
    for key in ("result", "model", "error", "idempotency_key"):
        if key in document:
            view[key] = document[key]
    stamps = {key: document.get(key) for key in ("created_at", "started_at", "finished_at")}
    view["timings"] = {key: _iso(stamp) for key, stamp in stamps.items()}
    created, started, finished = stamps.values()
    if finished and started and created:
        view["timings"] |= {
            "queued_s": (started - created).total_seconds(),
            "run_s": (finished - started).total_seconds(),
            "total_s": (finished - created).total_seconds(),
        }
    return view


def _iso(stamp: dt.datetime | None) -> str | None:
    return None if stamp is None else stamp.isoformat()


class BarePath:
    """ASGI middleware for the outer app: `POST /jobs` goes to the mounted `/jobs/` instead of a 307.

    Starlette's Mount("/jobs") only matches `/jobs/...`, and clients do not re-POST after a 307.
    """

    def __init__(self, app: ASGIApp, prefix: str = "/jobs") -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.prefix:
            scope = {**scope, "path": self.prefix + "/", "raw_path": (self.prefix + "/").encode()}
        await self.app(scope, receive, send)
