"""The prediction service: `POST /predict` with adaptive batching, `GET /model`, the job API (`POST /jobs`,
`GET /jobs/{id}`, service/jobs/api.py), the Open Inference Protocol at `/v2` (service/http/open_inference.py),
labels of answered rows (`POST /feedback`, service/evidence/feedback.py),
MLflow's alias webhook (`POST /hooks/mlflow`) and BentoML's own routes (`/livez`, `/readyz`, `/metrics`, the
OpenAPI page at `/` and `/docs.json`).

Serve the packaged champion with `bentoml serve service.service:PredictionService` (`./noxw -s serve` follows
`@champion`: FOLLOW_ALIAS, service/models/source.py). Defining the service reads `ServiceSettings` (the batching
bounds are part of the API's definition) and the packaged model's contract (the request and answer shapes of the
API and its document); each worker loads the model once, in `__init__`, and opens the job store and broker
clients when its job app starts: a store or broker that is down fails only the job requests (503).
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import bentoml
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.evidence import feedback as feedback_route
from service.evidence.records import Recorder
from service.evidence.window_view import WindowView
from service.http.access import LimitBody, RequireKey
from service.http.content_type import RequireJson
from service.http.docs_page import DocsPage
from service.http.error_rewrite import JsonErrors
from service.http.error_shape import error_document
from service.http.open_inference import PREFIX, inference_app
from service.http.open_inference import serve as serve_inference
from service.http.request_ids import RequestIds
from service.http.rows import RowRules
from service.http.schemas import answer_model, answer_of, request_model
from service.jobs.api import BarePath, served_jobs_app
from service.jobs.queue import quiet_broker_client
from service.jobs.submit import JobBackend, open_jobs
from service.models import webhook
from service.models.contract import ContractError, ModelContract, Rows, read_contract
from service.models.lineage import ModelLineage
from service.models.source import model_source, prometheus_reporter
from service.serving import bentoml_files
from service.serving.api_methods import bind_api_methods
from service.serving.error_log import drop_client_errors
from service.serving.frozen_objects import freeze_loaded_objects
from service.serving.model_calls import ModelCalls
from service.serving.own_socket import listen_on_own_socket
from service.serving.packaged import lineage_of, load_stored, model_dir
from service.serving.predictions import Predictions
from service.serving.request_timeout import use_in_bentoml as use_request_timeout
from service.settings import ServiceSettings, named_after

settings = ServiceSettings()
champion = bentoml.models.BentoModel(settings.bento_model_tag)


def _contract() -> ModelContract:
    return read_contract(model_dir(champion.stored, settings.bento_model_tag))


def _contract_if_stored() -> ModelContract | None:
    """The contract shapes the API's document; a build may import this module before the model is stored."""
    try:
        return _contract()
    except (BentoMLException, RuntimeError, ContractError, OSError):
        return None


log = logging.getLogger(__name__)
log.setLevel(logging.INFO)  # its one startup line a worker, beside BentoML's own
contract = _contract_if_stored()
Answer = answer_model(contract)
use_request_timeout()
PredictRequest = request_model("PredictRequest", RowRules(_contract, settings.max_rows), contract)

routes = FastAPI(title="model lineage", docs_url=None, redoc_url=None, openapi_url=None)


@contextmanager
def _open_jobs() -> Iterator[JobBackend]:
    with open_jobs(settings) as backend:
        yield backend


# Job bodies are parsed as /predict's are, up to the per-job row limit.
JobRequest = request_model("JobRequest", RowRules(_contract, settings.max_rows_per_job), contract)
jobs = served_jobs_app(_open_jobs, JobRequest)
# The Open Inference Protocol (KServe, Triton clients): the same validation and batching as /predict.
inference = inference_app(settings.max_rows, platform="tensorflow_keras")
# Labels of answered rows, by request id (service/evidence/feedback.py).
feedback = feedback_route.feedback_app(settings, contract)


@bentoml.service(
    name="nbship",
    workers=settings.workers,
    traffic={"timeout": settings.timeout_s},
    http={"host": settings.host, "port": settings.port},
    logging={"access": {"enabled": settings.access_log}},
    tracing=settings.tracing_config,
)
@bentoml.asgi_app(jobs, path="/jobs")
@bentoml.asgi_app(feedback, path="/feedback")
@bentoml.asgi_app(inference, path=PREFIX)
@bentoml.asgi_app(routes, path="/")
class PredictionService:
    bento_model = champion

    def __init__(self) -> None:
        drop_client_errors()
        quiet_broker_client()
        if settings.reuse_port and settings.workers > 1:
            listen_on_own_socket()  # before the worker listens: it starts serving after __init__
        bind_api_methods(self)  # BentoML rebuilds a method's wrapper on each access, per request
        stored = self.bento_model  # resolved: the stored model
        packaged = load_stored(
            stored,
            serve_runtime=settings.serve_runtime,
            intra_op_threads=settings.tf_intra_op_threads,
            inter_op_threads=settings.tf_inter_op_threads,
        )
        lineage = lineage_of(stored).model_copy(update={"bento_model": str(stored.tag)})
        # Which version answers: the packaged one, or (FOLLOW_ALIAS) the registry alias's, as the job worker decides.
        self.source = named_after(settings, lineage.name)
        secret = settings.webhook_secret
        self.webhook_secret = secret.get_secret_value() if secret else None
        self.models = model_source(
            packaged, self.source, lineage.model_dump(exclude_none=True), prometheus_reporter()
        )
        # Each answer recorded off the client's path (service/evidence/records.py); labels join them by id.
        self.recorder = Recorder(settings) if settings.evidence else None
        self.window = WindowView(settings, self.recorder, self.recorder.client) if self.recorder else None
        self.predictions = Predictions(
            self.models,
            ModelCalls(settings.inline_predict_ms / 1000),  # on the event loop, or in a thread
            batching=settings.batching,
            max_batch_size=settings.max_batch_size,
            max_latency_ms=settings.max_latency_ms,
            recorder=self.recorder,
        )
        serve_inference(inference, lambda: self.models.current, self.predictions)
        feedback_route.serve(feedback, lambda: self.models.current.contract)
        # The address is in BentoML's own line just before (the command line's --port wins over PORT).
        log.info(
            "API worker %d: %s version %s (%s, %s, %s)",
            os.getpid(), lineage.name, lineage.version, self.models.status.mode, stored.tag, packaged.runtime,
        )  # fmt: skip
        freeze_loaded_objects()  # last: what is loaded by now lives as long as the worker

    @bentoml.api(input_spec=PredictRequest, output_spec=Answer)
    async def predict(self, rows: Rows) -> BaseModel:
        """The model's answer for each row (classifiers: class index, class name when the notebook gave names,
        probabilities; regressors: the values; each output's under its name for a model of several), and the
        model version that answered. Concurrent requests are batched."""
        model, answer = await self.predictions.answer(rows)
        return answer_of(Answer, model.name, model.version, answer)

    @routes.post("/hooks/mlflow", status_code=202)
    async def mlflow_webhook(self, request: Request) -> JSONResponse:
        """MLflow's `model_version_alias.created` webhook, signed with WEBHOOK_SECRET: every follower on this host
        asks the registry now instead of at its next poll."""
        secret = self.webhook_secret
        if secret is None or self.models.status.mode == "pinned":
            return JSONResponse(
                error_document(404, "webhooks are off: set FOLLOW_ALIAS and WEBHOOK_SECRET"), 404
            )
        body = await request.body()
        try:
            event = webhook.verified_event(secret, {k.lower(): v for k, v in request.headers.items()}, body)
        except webhook.BadDelivery as exc:
            return JSONResponse(error_document(401, str(exc), loc=("header", "X-MLflow-Signature")), 401)
        source = self.source
        if not webhook.names_alias(event, source.model_name, source.follow_alias or ""):
            return JSONResponse({"nudged": False}, 200)
        webhook.nudge(webhook.nudge_file(source.data_dir, source.model_name))
        return JSONResponse({"nudged": True}, 202)

    @routes.get("/model", response_model=ModelLineage)
    def model_lineage(self) -> ModelLineage:
        """The served model: registered name, version, run, metrics, training time, its contract, how the
        version is chosen (pinned or following an alias; the last switch; versions refused and why), and its live
        evidence (requests recorded, sampled, labelled, dropped; the most drifted features)."""
        model = self.models.current
        evidence = self.window.view(model) if self.window else {"recording": False}
        return ModelLineage.model_validate(
            self.models.lineage
            | {
                "flavor": model.flavor,
                "contract": model.contract.describe(),
                "serving": self.models.view(),
                "evidence": evidence,
            }
        )


# Outermost of ours: every error answer is JSON. Clients do not re-POST after a redirect: the bare `POST /jobs`
# is served, not sent to `/jobs/` with a 307. Then the key check (only with API_KEYS: without, nothing changes),
# then the body limit: a caller without a key gets a 401 before anything is read. (`bentoml.service` makes the
# class a Service; its typing shows the class.)
_outer = cast(bentoml.Service[Any], PredictionService)
_outer.add_asgi_middleware(RequestIds)  # every answer, errors included, says its X-Request-ID
_outer.add_asgi_middleware(JsonErrors, protocol_prefix=PREFIX + "/")
_outer.add_asgi_middleware(BarePath, prefix="/jobs")
_outer.add_asgi_middleware(BarePath, prefix="/feedback")
_outer.add_asgi_middleware(BarePath, prefix=PREFIX)
_outer.add_asgi_middleware(RequireJson, paths=("/predict", "/jobs", "/feedback"))
_outer.add_asgi_middleware(  # `/`, `/docs`, `/docs.json`
    DocsPage,
    served=lambda: lineage_of(champion.stored),
    swagger=bentoml_files.swagger_dir(),
    task=contract.task if contract else None,
)
if settings.api_keys:
    _outer.add_asgi_middleware(RequireKey, keys=settings.api_keys)
_outer.add_asgi_middleware(LimitBody, max_bytes=settings.max_body_bytes)
