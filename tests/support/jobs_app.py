"""The job API's app with a submitter and store of the test's own (the served app opens its own at start-up)."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from service.jobs.api import jobs_app
from service.jobs.store import JobStore
from service.jobs.submit import JobBackend, JobSubmitter


def create_jobs_app(submitter: JobSubmitter, store: JobStore, request: type[BaseModel]) -> FastAPI:
    """`request`: the body model (service.http.schemas.request_model), which parses the rows."""
    app = jobs_app(request)
    app.state.jobs = JobBackend(submitter, store)
    return app
