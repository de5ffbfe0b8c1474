"""The job API served by BentoML beside /predict, a real `python -m service.jobs.worker` process, real servers.

The service starts while its job store is down: it must serve /predict and answer /jobs with 503. The store
(nx-27017) and the worker start after it; the worker writes its metrics where the service's /metrics reads them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.errors import one_error
from support.job_servers import delete_queues, fresh_job_settings, nx_server, settings_env
from support.processes import free_port, running

from service.serving import bentoml_files
from tests.conftest import PROJECT_ROOT, ChampionStore
from tests.e2e.conftest import BAD_BODIES, BAD_CONTENT_TYPES, wait_ready

pytestmark = pytest.mark.slow

MAX_ROWS_PER_JOB = 100
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Served:
    url: str
    before_store: dict[str, httpx.Response]  # answers given while the job store was down
    worker_pid: int
    worker_log: Path


@pytest.fixture(scope="module")
def served(
    packaged_champion: str,
    champion_store: ChampionStore,
    amqp_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    import bentoml

    folder = tmp_path_factory.mktemp("served-jobs")
    nx_port, port = free_port(), free_port()
    settings = fresh_job_settings(
        f"mongodb://127.0.0.1:{nx_port}",
        amqp_url,
        mongo_timeout_ms=500,
        max_rows_per_job=MAX_ROWS_PER_JOB,
    )
    url = f"http://127.0.0.1:{port}"
    worker = [sys.executable, "-m", "service.jobs.worker"]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings_env(settings).items():  # read by the workers BentoML starts
            patch.setenv(key, value)
        # What `./noxw -s serve` sets: the packaged version to serve.
        patch.setenv("MODEL_TAG", packaged_champion)
        server = bentoml.serve(
            "service.service:PredictionService", host="127.0.0.1", port=port, working_dir=str(PROJECT_ROOT)
        )
        try:
            wait_ready(url)
            with httpx.Client(base_url=url, timeout=30) as client:
                before_store = {
                    "submit": client.post("/jobs", json={"instances": [[0.0] * 64]}),
                    "get": client.get(f"/jobs/{'a' * 32}"),
                    "predict": client.post("/predict", json={"instances": [[0.0] * 64]}),
                }
            # After the service: BentoML empties its metrics folder when it starts.
            worker_env = champion_store.env(PROMETHEUS_MULTIPROC_DIR=str(bentoml_files.metrics_dir()))
            with (
                nx_server(folder / "nx-27017", nx_port),
                running(
                    worker, lambda: True, "worker", folder / "worker.log", env=worker_env, cwd=PROJECT_ROOT
                ) as worker_process,
            ):
                yield Served(url, before_store, worker_process.pid, folder / "worker.log")
        finally:
            server.stop()
            delete_queues(settings)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def finished(client: httpx.Client, job_url: str, timeout_s: float = 120) -> dict[str, Any]:
    """The job's view once it is succeeded or failed (the worker loads TensorFlow first: allow for it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view: dict[str, Any] = client.get(job_url).json()
        if view["status"] in ("succeeded", "failed"):
            return view
        time.sleep(0.25)
    raise TimeoutError(f"{job_url} not finished after {timeout_s:.0f} s")


def test_with_the_store_down_the_service_predicts_and_jobs_answer_503(served: Served) -> None:
    submit, get, predict = (served.before_store[key] for key in ("submit", "get", "predict"))
    assert predict.status_code == 200, predict.text
    assert submit.status_code == 503
    assert submit.json() == one_error(
        "job store unavailable, nothing was accepted; retry later", [], "unavailable"
    )
    assert get.status_code == 503 and get.json() == one_error(
        "job store unavailable; retry later", [], "unavailable"
    )


def test_a_job_on_the_bare_path_succeeds_with_predicts_answer(
    client: httpx.Client, champion_store: ChampionStore
) -> None:
    rows = champion_store.rows.tolist()
    answer = client.post("/jobs", json={"instances": rows}, follow_redirects=False)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["status"] == "queued" and job["url"] == f"/jobs/{job['id']}" == answer.headers["location"]

    view = finished(client, job["url"])
    assert view["status"] == "succeeded", view
    predicted = client.post("/predict", json={"instances": rows}).json()
    assert (
        view["model"]
        == predicted["model"]
        == {"name": "digits-classifier", "version": champion_store.version}
    )
    # The result is what /predict answers for the same rows, value for value (not rounded for storage).
    assert view["result"] == {key: predicted[key] for key in ("predictions", "classes", "probabilities")}


def test_the_worker_serves_the_lean_form_and_has_no_tensorflow(
    served: Served, client: httpx.Client, champion_store: ChampionStore
) -> None:
    """Having answered a job, the worker process says it runs ONNX Runtime and has loaded no TensorFlow library."""
    job = client.post("/jobs", json={"instances": champion_store.rows[:2].tolist()}).json()
    assert finished(client, job["url"])["status"] == "succeeded"
    assert f"version {champion_store.version} (pinned, onnxruntime)" in served.worker_log.read_text()
    maps = Path(f"/proc/{served.worker_pid}/maps").read_text()
    assert "onnxruntime" in maps and "tensorflow" not in maps


def test_the_same_idempotency_key_returns_the_same_job(
    client: httpx.Client, champion_store: ChampionStore
) -> None:
    rows = champion_store.rows[:2].tolist()
    key = {"Idempotency-Key": f"order-{time.time_ns()}"}
    first = client.post("/jobs", json={"instances": rows}, headers=key)
    again = client.post("/jobs/", json={"instances": rows}, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    reused = client.post("/jobs", json={"instances": rows[:1]}, headers=key)
    assert reused.status_code == 409 and reused.json()["errors"][0]["type"] == "idempotency_key_reused"


def test_unknown_or_malformed_ids_are_404(client: httpx.Client) -> None:
    for job_id in ("not-a-job-id", "0" * 32):
        answer = client.get(f"/jobs/{job_id}")
        assert answer.status_code == 404 and answer.json() == one_error(
            f"no job {job_id!r}", ["path", "job_id"], "not_found"
        )


BAD_JOB_BODIES = [
    (b'{"instances": [[' + b"0, " * 63 + b"0], [1, 2]]}", "row 1: has 2 values, the model takes 64"),
    (b'{"instances": [[NaN' + b", 0" * 63 + b"]]}", "row 0, field 0: nan is not a finite number"),
    (b'{"instances": [[0, "x"' + b", 0" * 62 + b"]]}", "row 0, field 1: expected a number"),
    (b'{"instances": [' + b",".join([b"[" + b"0," * 63 + b"0]"] * 101) + b"]}", "at most 100 rows"),
    (b'{"instances": []}', "no rows"),
]


@pytest.mark.parametrize(("body", "message"), BAD_JOB_BODIES, ids=[m for _, m in BAD_JOB_BODIES])
def test_bad_rows_are_422_naming_the_row(client: httpx.Client, body: bytes, message: str) -> None:
    answer = client.post("/jobs", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["detail"]


@pytest.mark.parametrize(
    ("name", "body", "message", "status"), BAD_BODIES, ids=[case[0] for case in BAD_BODIES]
)
def test_predict_and_jobs_refuse_a_bad_body_alike(
    client: httpx.Client, name: str, body: bytes, message: str, status: int
) -> None:
    """One request contract: the same body gets the same status and the same error on both routes."""
    if name == "too many rows":
        return  # the routes' row limits differ by design (64 a request, 100 a job here)
    answers = [client.post(path, content=body, headers=JSON) for path in ("/predict", "/jobs")]
    assert [answer.status_code for answer in answers] == [status, status], [a.text for a in answers]
    predict, job = (answer.json() for answer in answers)
    assert message in predict["detail"] and predict["detail"] == job["detail"]
    # The same entries too: at least one, each pointing into the body the same way on both routes.
    assert predict["errors"] and [(e["loc"], e["type"]) for e in predict["errors"]] == [
        (e["loc"], e["type"]) for e in job["errors"]
    ]
    assert all(error["loc"][0] == "body" for error in predict["errors"])


@pytest.mark.parametrize("content_type", BAD_CONTENT_TYPES)
def test_a_body_that_is_not_json_is_415_on_both_routes(client: httpx.Client, content_type: str) -> None:
    body = json.dumps({"instances": [[0.0] * 64]}).encode()
    for path in ("/predict", "/jobs"):
        answer = client.post(path, content=body, headers={"content-type": content_type})
        assert answer.status_code == 415, (path, answer.text)
        assert answer.json()["detail"].endswith("is not supported; send application/json")
        assert answer.json()["errors"][0]["loc"] == ["header", "Content-Type"]


def test_job_metrics_are_on_the_services_metrics(client: httpx.Client, champion_store: ChampionStore) -> None:
    job = client.post("/jobs", json={"instances": champion_store.rows[:1].tolist()}).json()
    assert finished(client, job["url"])["status"] == "succeeded"
    wanted = (
        'nbship_jobs_finished_total{state="succeeded"}',
        'nbship_job_submit_to_done_seconds_count{state="succeeded"}',
        'nbship_job_queue_depth{queue="main"}',
        'nbship_jobs{state="queued"}',
    )
    deadline = time.monotonic() + 30  # the gauges come with the worker's next sweep
    while missing := [name for name in wanted if name not in client.get("/metrics").text]:
        assert time.monotonic() < deadline, f"not on /metrics: {missing}"
        time.sleep(0.5)


def test_job_routes_are_in_the_openapi_document(client: httpx.Client) -> None:
    paths = client.get("/docs.json").json()["paths"]
    assert {"/jobs/", "/jobs/{job_id}", "/predict"} <= set(paths)
    assert "post" in paths["/jobs/"] and "get" in paths["/jobs/{job_id}"]
