"""The service served by `bentoml serve` (2 workers, a process of its own) and called over HTTP with a real client."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from support.processes import http_ok, running
from support.served import BENTOML, SERVICE

from service.stack.polling import wait_until
from tests.conftest import PROJECT_ROOT, ChampionStore
from tests.e2e.conftest import BAD_BODIES, free_port, wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(
    packaged_champion: str, champion_store: ChampionStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, Path]]:
    """The URL, the PID and the log of `bentoml serve` with 2 workers, its descendants. A process of its own: served in
    this one (`bentoml.serve`), the worker count would be that of whichever test imported the service first."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [BENTOML, "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path_factory.mktemp("served") / "service.log"
    env = champion_store.env(WORKERS="2")
    with running(
        command, http_ok(f"{url}/readyz"), "the service", log, 180, env=env, cwd=PROJECT_ROOT
    ) as server:
        wait_ready(url)
        warm_up(url)
        yield url, server.pid, log


@pytest.fixture(scope="module")
def url(served: tuple[str, int, Path]) -> str:
    return served[0]


def warm_up(url: str) -> None:
    """Sequential requests first: each worker times its first model calls of a batch size in a thread
    (service/model_calls.py), and TensorFlow traces its first calls."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(40):
            assert client.post("/predict", json={"instances": [[0.0] * 64]}).status_code == 200


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_predictions_over_http_equal_the_models_own(
    client: httpx.Client, champion_store: ChampionStore
) -> None:
    response = client.post("/predict", json={"instances": champion_store.rows.tolist()})
    assert response.status_code == 200
    body = response.json()
    np.testing.assert_allclose(body["probabilities"], champion_store.probabilities, rtol=1e-5, atol=1e-6)
    assert body["predictions"] == champion_store.probabilities.argmax(axis=1).tolist()
    assert body["model"] == {"name": "digits-classifier", "version": champion_store.version}


def test_concurrent_single_rows_are_batched_and_answered_each_with_its_own_row(
    client: httpx.Client, champion_store: ChampionStore
) -> None:
    rows = champion_store.rows

    def one(i: int) -> list[float]:
        response = client.post("/predict", json={"instances": [rows[i % len(rows)].tolist()]})
        assert response.status_code == 200, response.text
        return response.json()["probabilities"][0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, range(200)))
    expected = champion_store.probabilities[[i % len(rows) for i in range(200)]]
    np.testing.assert_allclose(answers, expected, rtol=1e-5, atol=1e-6)
    metrics = client.get("/metrics").text
    # The batches' sizes (requests a model call) are exported: fewer calls than requests under this load.
    calls = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("nbship_batch_requests_count")
    )
    answered = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("nbship_batch_requests_sum")
    )
    assert 0 < calls < answered


@pytest.mark.parametrize(
    ("name", "body", "message", "status"), BAD_BODIES, ids=[case[0] for case in BAD_BODIES]
)
def test_bad_input_is_a_4xx_json_error_that_says_what_is_wrong(
    client: httpx.Client, name: str, body: bytes, message: str, status: int
) -> None:
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, (name, response.status_code, response.text)
    error = response.json()
    assert message in error["detail"] and isinstance(error["errors"], list), error
    assert len(response.content) < 4096  # short: never the input echoed back


def test_lineage_health_metrics_and_openapi(client: httpx.Client, champion_store: ChampionStore) -> None:
    lineage = client.get("/model").json()
    assert (lineage["version"], lineage["run_id"], lineage["alias"]) == (
        champion_store.version,
        champion_store.run_id,
        "champion",
    )
    assert (
        set(lineage["metrics"]) == {"test_accuracy", "test_macro_f1", "test_log_loss"}
        and lineage["trained_at"]
    )
    assert lineage["contract"]["inputs"] == [{"name": "pixels", "dtype": "float32", "shape": [-1, 64]}]
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert "bentoml_service_request_total" in client.get("/metrics").text
    paths = client.get("/docs.json").json()["paths"]
    assert {"/predict", "/model"} <= set(paths)
    assert client.get("/").status_code == 200  # the OpenAPI page


def test_each_worker_listens_on_its_own_socket_on_uvloop_and_httptools(served: tuple[str, int, Path]) -> None:
    """Connections are spread by the kernel over the workers' own SO_REUSEPORT sockets, not taken by whichever
    worker is awake from one shared socket (docs/benchmarks/serve.md); uvicorn chose uvloop and httptools."""
    import psutil

    url, pid, _ = served
    port = int(url.rsplit(":", 1)[1])

    def listening() -> dict[int, set[int]]:
        """The supervisor and each BentoML worker (`--fd N`) -> inodes of the sockets it listens on at the port."""
        supervisor = psutil.Process(pid)  # this process: other tests' servers are its children too
        tree = [supervisor, *(p for p in supervisor.children(recursive=True) if _bentoml_worker(p))]
        return {
            process.pid: {
                os.stat(f"/proc/{process.pid}/fd/{c.fd}").st_ino
                for c in process.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port
            }
            for process in tree
        }

    # /readyz answers once one worker is up; the other may still be loading the model, its socket not yet made.
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: sum(1 for inodes in listening().values() if inodes) >= 2, 120, "both workers")
    sockets = listening()
    workers = [worker for worker, inodes in sockets.items() if inodes]
    assert len(workers) == 2 and pid not in workers, (
        sockets
    )  # the supervisor's shared socket no longer listens
    assert len(set().union(*sockets.values())) == 2, sockets  # one socket each, not one shared

    # A pool opened at once, as a gateway or a load generator does: every worker gets some of it.
    pool = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(32)]
    try:
        for connection in pool:
            connection.sendall(b"GET /livez HTTP/1.1\r\nHost: test\r\n\r\n")
        for connection in pool:
            assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        ours = {connection.getsockname()[1] for connection in pool}  # not the other tests' client
        held = {
            worker: sum(
                1
                for c in psutil.Process(worker).net_connections("tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port and c.raddr.port in ours
            )
            for worker in workers
        }
    finally:
        for connection in pool:
            connection.close()
    assert sum(held.values()) == 32 and min(held.values()) > 0, held

    for worker in workers:
        mapped = Path(f"/proc/{worker}/maps").read_text()
        assert "/uvloop/loop." in mapped and "/httptools/parser/parser." in mapped


def _bentoml_worker(process: Any) -> bool:
    """A BentoML worker: its command line names the shared socket it was handed (`--fd N`)."""
    import psutil

    try:
        return "--fd" in process.cmdline()
    except psutil.Error:  # ended meanwhile
        return False


SERVING_DOC = (PROJECT_ROOT / "docs" / "serving.md").read_text()


def test_the_open_inference_examples_of_docs_serving_answer_as_predict_does(
    url: str, client: httpx.Client, champion_store: ChampionStore
) -> None:
    """docs/serving.md's `/v2` curl body and its tritonclient snippet, run as they are shown, against the served
    digits model: the same probabilities as /predict's."""
    import json
    import re

    body = re.search(r"/v2/models/digits-classifier/infer .*?-d '(\{.*?\})'", SERVING_DOC, re.S)
    assert body, "docs/serving.md shows an infer request"
    row = json.loads(body.group(1))["inputs"][0]["data"]
    predicted = client.post("/predict", json={"instances": [row]}).json()["probabilities"]
    inferred = client.post("/v2/models/digits-classifier/infer", content=body.group(1))
    assert inferred.status_code == 200, inferred.text
    (output,) = inferred.json()["outputs"]
    np.testing.assert_allclose(output["data"], predicted[0], rtol=1e-5, atol=1e-6)
    assert client.get("/v2/health/ready").json() == {"ready": True}

    snippet = re.search(r"```python\n(import tritonclient.*?)```", SERVING_DOC, re.S)
    assert snippet, "docs/serving.md shows a tritonclient call"
    code = snippet.group(1).replace('"127.0.0.1:3000"', repr(url.removeprefix("http://")))
    scope: dict[str, Any] = {"rows": champion_store.rows[:3]}
    exec(code, scope)  # the documented snippet itself
    np.testing.assert_allclose(scope["probabilities"], champion_store.probabilities[:3], rtol=1e-5, atol=1e-6)


def test_each_worker_says_at_start_which_model_version_and_runtime_it_serves_and_a_lean_one_has_no_tensorflow(
    served: tuple[str, int, Path], champion_store: ChampionStore, packaged_champion: str
) -> None:
    """The digits champion has a lean form: each API worker serves it with ONNX Runtime, and having loaded it and
    answered requests, has loaded no TensorFlow library (its memory maps, read from /proc)."""
    started = [line for line in served[2].read_text().splitlines() if "API worker " in line]
    expected = (
        f": digits-classifier version {champion_store.version} (pinned, {packaged_champion}, onnxruntime)"
    )
    assert len(started) == 2 and all(line.endswith(expected) for line in started), started
    httpx.post(
        f"{served[0]}/predict", json={"instances": champion_store.rows[:2].tolist()}
    ).raise_for_status()
    for line in started:
        pid = int(re.search(r"API worker (\d+):", line).group(1))  # type: ignore[union-attr]
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "onnxruntime" in maps and "tensorflow" not in maps, f"worker {pid}"
