"""The jobs benchmark's peer: the job API as most would build it with Celery 5 (tests/benchmarks/jobs_bench.py).

RabbitMQ broker (pyamqp) and MongoDB result backend, configured for reliability as Celery's documentation
advises: a task is acknowledged after it ran (`task_acks_late`) and given back if its process dies
(`task_reject_on_worker_lost`), a worker process reserves one task at a time (`worker_prefetch_multiplier=1`),
and `delay` returns once the broker confirmed the message (`confirm_publish`). Results are written journaled
(`journal=true` in the backend URL, as the job layer's are), else an acked task's result could be lost.

- `python celery_peer.py worker`: one `celery worker` with `--concurrency 2` prefork processes, each of which
  loads the packaged model (`load_packaged`, as the classic worker does) and predicts one job a task.
- `uvicorn --factory celery_peer:front --workers 2`: `POST /jobs` parses the rows as the service's job API does
  (service.schemas.request_model), `delay`s the task and answers 202 with its id; `GET /jobs/{id}` answers the
  task's state and result (`AsyncResult`: one read of the backend; an unknown id reads as queued).

The front stamps each job's submission (`submitted_at`, epoch seconds) and the task returns it beside the
answer, so the backend's document holds both ends of a job: `submitted_at` and Celery's own `date_done`.
Settings come from the environment (`PeerSettings`, prefix PEER_; the model as the service names it).
"""

import logging
import os
import sys
import time
from typing import Any

import numpy as np
from celery import Celery, Task
from celery.result import AsyncResult
from celery.signals import worker_process_init
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

PROCESSES = 2  # prefork processes of the one worker: as many as the job workers' processes that predict
STATES = {"PENDING": "queued", "STARTED": "running", "RETRY": "queued", "SUCCESS": "succeeded"}
MODEL_LOADED = (
    "celery peer: model loaded"  # a worker process's log line once it can predict (the bench waits)
)


class PeerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PEER_")

    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    backend_url: str = "mongodb://127.0.0.1:27017/celery_peer?journal=true"
    max_rows: int = 10_000  # a job's rows at most, as the job API's MAX_ROWS_PER_JOB


class Predict(Task):
    """One job a task: the rows, predicted on the graph fast path the job worker uses."""

    name = "nbship_peer.predict"  # the same in the worker (run as __main__) and in the front (imported)
    model: Any = None  # this process's model, loaded once it is forked (TensorFlow is not fork-safe)

    def run(self, rows: list[list[float]], submitted_at: float) -> dict[str, Any]:
        contract = self.model.contract
        outputs = self.model.predict({contract.input.name: np.asarray(rows, dtype=contract.input.dtype)})
        return {"answer": contract.answer(outputs), "submitted_at": submitted_at}


def celery_app(settings: PeerSettings) -> Celery:
    app = Celery("nbship-peer", broker=settings.broker_url, backend=settings.backend_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        # Loading TensorFlow and the model in a fresh process takes longer than the default 4 s a process
        # has to start before Celery replaces it.
        worker_proc_alive_timeout=120,
    )
    app.register_task(Predict())
    return app


@worker_process_init.connect
def _load_model(**_: Any) -> None:
    from service.models.quiet import quiet

    quiet()
    from service.serving.packaged import load_packaged
    from service.settings import ServiceSettings

    Predict.model = load_packaged(ServiceSettings().bento_model_tag)
    log.warning("%s in process %d", MODEL_LOADED, os.getpid())


def front() -> FastAPI:
    """The HTTP front (a uvicorn factory: built in each server process)."""
    import bentoml

    from service.http.rows import RowRules
    from service.http.schemas import request_model
    from service.models.contract import read_contract
    from service.serving.packaged import model_dir
    from service.settings import JobSettings, ServiceSettings

    settings = PeerSettings()
    app = celery_app(settings)
    predict = app.tasks[Predict.name]
    tag = ServiceSettings().bento_model_tag
    # Read before serving, as the service does; read on first use, the first requests would all import BentoML.
    contract = read_contract(model_dir(bentoml.models.get(tag), tag))
    JobRequest = request_model("JobRequest", RowRules(lambda: contract, JobSettings().max_rows_per_job), None)
    http = FastAPI(title="celery peer", docs_url=None, redoc_url=None, openapi_url=None)

    # Sync, as the job API's submit: `delay` blocks until the broker confirms, so it runs in the thread pool.
    # (FastAPI reads the body's type off the annotation, a name local to this function: hence no
    # `from __future__ import annotations` in this module.)
    @http.post("/jobs", status_code=202)
    def submit(body: JobRequest) -> JSONResponse:  # type: ignore[valid-type]
        rows = body.instances.tolist()  # type: ignore[attr-defined]
        job_id = predict.delay(rows, time.time()).id
        url = f"/jobs/{job_id}"
        return JSONResponse({"id": job_id, "status": "queued", "url": url}, 202, headers={"Location": url})

    @http.get("/jobs/{job_id}")
    def job(job_id: str) -> JSONResponse:
        result = AsyncResult(job_id, app=app)
        view: dict[str, Any] = {"id": job_id, "status": STATES.get(result.state, "failed")}
        if result.successful():
            view["result"] = result.result["answer"]
        elif result.failed():
            view["error"] = repr(result.result)
        return JSONResponse(view)

    return http


def worker() -> None:
    """One Celery worker of PROCESSES prefork processes on the peer's queue; stops on SIGTERM (warm shutdown)."""
    app = celery_app(PeerSettings())
    app.worker_main(["worker", "--pool", "prefork", "--concurrency", str(PROCESSES), "--loglevel", "WARNING"])


if __name__ == "__main__":  # `python celery_peer.py worker` (PYTHONPATH: the project and tests/benchmarks/)
    if sys.argv[1:] != ["worker"]:
        raise SystemExit("usage: celery_peer.py worker")
    worker()
