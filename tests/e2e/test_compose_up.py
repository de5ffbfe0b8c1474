"""docker/compose.yaml started for real (issue 22): the compose section of docs/containers.md followed line by line with
podman-compose on podman, the API and worker images built by `./noxw -s container`, run as compose.yaml runs them
(read-only root, the image's user, secrets from .env); only RabbitMQ, MongoDB and the MLflow server are stand-ins
built here (docker/standins, docker/compose.test.yaml). The phases run in order on one project:

1. the servers up, each healthy, their admin ports on 127.0.0.1 only;
2. train against the compose MLflow server from the host, build the image, `up`: every service healthy after those
   it depends on, the API on its one published port with that version, /predict equal to the model's own outputs
   with a key from .env, 401 without; the image as built: nothing for training in it, no compiler, under its size
   bound, run as its user, no build CA and no secret in it (what tests/e2e/test_container.py checked on an image of
   its own until the two shared this one build, docs/testing.md);
3. 500 jobs through the API drained by three workers while one worker is killed and RabbitMQ restarted: each ends
   succeeded with one result write, no queue holds anything, the workers count them on their metrics;
4. `down`, `up` with the same volumes: the jobs, their results and the registry are still there;
5. a new champion rolled out as docs/containers.md says (pinned): how long /predict fails or answers the old version; then
   following the alias: the switch with no failed request;
6. the production file: only the API's port is published.

Host ports are the test's own (the host's RabbitMQ, and any MLflow or MongoDB on 5000 or 27017, are untouched);
every container, pod, volume and network is removed at the end, by the project's name. Phase timings are printed
(`-s`). Takes about 20 minutes with the images built, more without (docs in the compose section of docs/containers.md)."""

from __future__ import annotations

import json
import random
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
from pymongo import MongoClient
from support.compose import (
    ROOT,
    ComposeProject,
    compose_project,
    podman,
    set_env_value,
    standin_images,
)
from support.containers import RUN_OPTIONS

from pipeline.container import SYSTEM_CA_BUNDLE, base_image_name
from tests.e2e.conftest import wait_ready as served_ready

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (.ci/run installs it)"),
]

SECTION = re.search(
    r"^## Containers: compose and Kubernetes$(.*?)(?=^## |\Z)",
    (ROOT / "docs" / "containers.md").read_text(),
    re.M | re.S,
)
README = SECTION.group(1) if SECTION else ""
IMAGE_NAME = "localhost/nbship-compose-e2e"
SERVERS = {"rabbitmq": 1, "mongo": 1, "mlflow": 1}
MODEL = "digits-classifier"
KEY_NAME = "ci"
JOBS = 500
TIMES: dict[str, float] = {}  # phase -> seconds, printed at the end
# The digits champion has a lean form, so its image is the lean one, with no TensorFlow or Keras in it at all. It
# weighed 0.64 GB when first built and 0.49 GB since it lost pandas, uv and ONNX Runtime's C API library (the
# TensorFlow image 1.49 GB: docs/benchmarks/image.md); the lean-runtime issue asked 0.6 GB. The bound is what it
# weighs and a little, so that it does not grow unnoticed.
MAX_IMAGE_BYTES = 500_000_000
NOT_IN_IMAGE = (
    *("sklearn", "matplotlib", "papermill", "nbconvert", "ipykernel", "flask", "alembic"),  # training
    *("tensorflow", "keras", "tf2onnx"),  # TensorFlow: a lean version never needs it
    "pandas",  # mlflow.keras's and mlflow.pyfunc's: a lean process imports neither
)


def readme(project: ComposeProject, line: str, args: str = "", timeout: float = 900) -> str:
    """A line the compose section of docs/containers.md shows (with `args` after it), run as podman here needs it; its output."""
    assert line in README, f"the compose section of docs/containers.md does not show {line!r}"
    return project.readme(f"{line} {args}".strip(), timeout)


@dataclass
class Stack:
    project: ComposeProject
    key: str
    mongo_password: str
    rabbitmq_password: str
    versions: dict[str, str] = field(default_factory=dict)  # what -> registered version
    jobs: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.project.ports['API_PORT']}"

    @property
    def mlflow(self) -> str:
        return f"http://127.0.0.1:{self.project.ports['MLFLOW_PORT']}"

    def client(self, key: bool = True, timeout_s: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def store(self) -> MongoClient:
        port = self.project.ports["MONGO_PORT"]
        return MongoClient(
            f"mongodb://root:{self.mongo_password}@127.0.0.1:{port}/?authSource=admin", tz_aware=True
        )

    def queues(self) -> dict[str, int]:
        """Messages in the job queues, from the management API (published on 127.0.0.1 by the override)."""
        port = self.project.ports["RABBITMQ_UI_PORT"]
        listed = httpx.get(
            f"http://127.0.0.1:{port}/api/queues/%2F", auth=("nbship", self.rabbitmq_password), timeout=10
        ).json()
        return {q["name"]: q.get("messages", 0) for q in listed if q["name"].startswith("nbship.jobs")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = time.monotonic()
    images = standin_images()
    TIMES["stand-in images (built or reused)"] = time.monotonic() - started
    passwords = {name: secrets.token_hex(24) for name in ("RABBITMQ_PASSWORD", "MONGO_ROOT_PASSWORD")}
    key = secrets.token_urlsafe(32)
    secret_values = {**passwords, "API_KEYS": f"{KEY_NAME}:{key}"}
    folder = tmp_path_factory.mktemp("compose")
    try:
        with compose_project(folder, secret_values, images) as project:
            set_env_value(folder, "NBSHIP_IMAGE", f"{IMAGE_NAME}:latest")
            project.env.update(IMAGE_NAME=IMAGE_NAME, DATA_DIR=str(folder / "data"))
            yield Stack(project, key, passwords["MONGO_ROOT_PASSWORD"], passwords["RABBITMQ_PASSWORD"])
    finally:
        for tag in podman(
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            f"reference={IMAGE_NAME}",
            check=False,
        ).split():
            podman("rmi", "--force", tag, check=False)
        print("\ncompose phases: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in TIMES.items()))


def timed(name: str, started: float) -> None:
    TIMES[name] = time.monotonic() - started


def test_1_the_servers_come_up_healthy_with_admin_ports_on_loopback(stack: Stack) -> None:
    started = time.monotonic()
    project = stack.project
    readme(project, "docker compose up -d rabbitmq mongo mlflow")
    project.wait_healthy(SERVERS)
    timed("1 servers up and healthy", started)
    for service in SERVERS:
        published = project.published(service)
        assert published and all(p.split(" -> ")[1].startswith("127.0.0.1:") for p in published), published


def train(stack: Stack, epochs: int) -> str:
    """The compose section's training line against the compose MLflow server (few epochs); the version it registered."""
    line = "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 ../noxw -s pipeline"
    printed = readme(stack.project, line, f"-- -p epochs {epochs}")
    return re.findall(rf"registered {MODEL} version (\d+)", printed)[-1]


def build_image(stack: Stack) -> None:
    readme(stack.project, "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 ../noxw -s container", timeout=1800)


def digits_rows(n: int = 20) -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data[:n].astype(np.float32)


def model_outputs(stack: Stack, version: str, rows: np.ndarray) -> np.ndarray:
    """The registered model's own outputs (Keras, predict_on_batch), loaded from the compose registry."""
    script = (
        "import json, sys, mlflow, numpy as np\n"
        f"model = mlflow.keras.load_model('models:/{MODEL}/{version}')\n"
        "rows = np.asarray(json.load(sys.stdin), dtype=np.float32)\n"
        "print(json.dumps(np.asarray(model.predict_on_batch(rows)).tolist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(rows.tolist()),
        env={**stack.project.env, "MLFLOW_TRACKING_URI": stack.mlflow, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return np.asarray(json.loads(done.stdout.splitlines()[-1]))


def wait_ready(stack: Stack) -> None:
    """/readyz on the API's published port (the healthcheck asks it inside the container)."""
    try:
        served_ready(stack.url)
    except TimeoutError:
        raise AssertionError(
            f"/readyz did not answer on the published port\n{stack.project.logs('api')}"
        ) from None


def test_2_trained_against_compose_mlflow_built_and_served(stack: Stack) -> None:
    project = stack.project
    started = time.monotonic()
    stack.versions["first"] = train(stack, epochs=1)
    timed("2a train against the compose MLflow server", started)
    started = time.monotonic()
    build_image(stack)
    timed("2b build the API and worker image", started)
    started = time.monotonic()
    readme(project, "docker compose up -d")
    healthy = project.wait_healthy({**SERVERS, "api": 1, "worker": 1})
    timed("2c API and worker up and healthy", started)
    # In order of depends_on: the API and the worker were healthy only after the broker and the store were.
    for service in ("api", "worker"):
        assert healthy[service] > max(healthy["rabbitmq"], healthy["mongo"])
    assert project.published("api") == [f"3000/tcp -> 127.0.0.1:{project.ports['API_PORT']}"]

    wait_ready(stack)
    rows = digits_rows()
    with stack.client() as client:
        model = client.get("/model").json()
        assert (model["name"], model["version"]) == (MODEL, stack.versions["first"])
        answer = client.post("/predict", json={"instances": rows.tolist()})
        assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(
        answer.json()["probabilities"],
        model_outputs(stack, stack.versions["first"], rows),
        rtol=1e-5,
        atol=1e-6,
    )
    with stack.client(key=False) as anonymous:
        assert anonymous.post("/predict", json={"instances": rows[:1].tolist()}).status_code == 401
        assert anonymous.get("/livez").status_code == 200 and anonymous.get("/readyz").status_code == 200
        assert "bentoml_service_request_total" in anonymous.get("/metrics").text
    with stack.client() as client:
        bad = client.post("/predict", json={"instances": [[1, 2, 3]]})
        assert bad.status_code == 422 and "the model takes 64" in bad.text
    assert_the_image_as_built(stack)


def in_container(stack: Stack, service: str, *command: str) -> str:
    return podman("exec", stack.project.container(service), *command)


def assert_the_image_as_built(stack: Stack) -> None:
    """What the image holds, seen in the API's container: what serving imports and nothing for training nor
    TensorFlow (the lean image of a lean version), no compiler, git or uv, within its size bound, the image's own user, the base image's CA bundle (the build's extra
    one was mounted for the build only) and no secret in its configuration."""
    probe = f"import importlib.util as u; print([m for m in {NOT_IN_IMAGE!r} if u.find_spec(m)])"
    assert in_container(stack, "api", "python", "-c", probe).strip() == "[]"
    # The build's compiler, git and uv: nothing in the image runs them.
    for tool in ("/usr/bin/gcc", "/usr/bin/git", "/usr/local/bin/uv"):
        assert in_container(stack, "api", "test", "!", "-e", tool) == "", tool
    image = f"{IMAGE_NAME}:latest"
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image))
    assert size <= MAX_IMAGE_BYTES, f"the image weighs {size / 1e9:.2f} GB (docs/benchmarks/image.md)"
    assert in_container(stack, "api", "id", "-un").strip() == "bentoml"
    assert in_container(stack, "worker", "id", "-u").strip() != "0"
    base_bundle = podman(
        "run", "--rm", *RUN_OPTIONS, "--entrypoint", "sha256sum", base_image_name(), SYSTEM_CA_BUNDLE
    )
    assert in_container(stack, "api", "sha256sum", SYSTEM_CA_BUNDLE).strip() == base_bundle.strip()
    config = podman("image", "inspect", "--format", "{{json .Config.Env}}", image)
    assert "PASSWORD" not in config and "API_KEYS" not in config and "SECRET" not in config


@dataclass
class Faults:
    """Kills one of the running workers once `kill_at` jobs are accepted, restarts RabbitMQ once `restart_at` are."""

    stack: Stack
    kill_at: int
    restart_at: int
    done: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def after(self, accepted: int) -> None:
        """Called after each acceptance; acts outside the lock, so that the other clients go on submitting."""
        with self.lock:
            due = [
                fault
                for fault, at in (("worker killed", self.kill_at), ("broker restarted", self.restart_at))
                if accepted >= at and fault not in self.done
            ]
            self.done += due
        if "worker killed" in due:
            podman("kill", random.choice(self.stack.project.containers("worker"))["Names"][0])
        if "broker restarted" in due:
            podman("restart", self.stack.project.container("rabbitmq"), timeout=300)


def submit(stack: Stack, index: int, faults: Faults, accepted: list[str]) -> None:
    """One job, retried with its Idempotency-Key while the API answers 503 or the connection fails."""
    rows = digits_rows(1 + index % 4).tolist()
    headers = {"Idempotency-Key": f"job-{index}"}
    deadline = time.monotonic() + 300
    with stack.client() as client:
        while True:
            try:
                answer = client.post("/jobs", json={"instances": rows}, headers=headers)
                if answer.status_code == 202:
                    break
                assert answer.status_code == 503, answer.text
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"job {index} not accepted in 300 s"
            time.sleep(0.5)
    accepted.append(answer.json()["id"])
    faults.after(len(accepted))


def test_3_jobs_survive_a_killed_worker_and_a_restarted_broker(stack: Stack) -> None:
    project = stack.project
    started = time.monotonic()
    readme(project, "docker compose up -d --scale worker=3")
    project.wait_healthy({"worker": 3})
    timed("3a scale to three workers", started)
    started = time.monotonic()
    faults = Faults(stack, kill_at=JOBS // 5, restart_at=JOBS // 2)
    accepted: list[str] = []
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: submit(stack, i, faults, accepted), range(JOBS)))
    assert faults.done == ["worker killed", "broker restarted"]
    assert len(set(accepted)) == JOBS
    with stack.store() as client:
        jobs = client.nbship.jobs
        deadline = time.monotonic() + 600
        while (
            jobs.count_documents({"status": {"$in": ["queued", "running"]}}) and time.monotonic() < deadline
        ):
            time.sleep(2)
        documents = list(jobs.find({"_id": {"$in": accepted}}, {"status": 1, "result_writes": 1}))
    timed(f"3b {JOBS} jobs through a worker kill and a broker restart", started)
    assert Counter(d["status"] for d in documents) == {"succeeded": JOBS}, project.logs("worker")
    assert Counter(d.get("result_writes") for d in documents) == {1: JOBS}, "a result written twice"
    queues = wait_for(lambda: stack.queues(), lambda q: not any(q.values()), 60)
    assert queues == {"nbship.jobs": 0, "nbship.jobs.retry": 0, "nbship.jobs.dead": 0}
    stack.jobs = accepted
    scrape = "import urllib.request as r; print(r.urlopen('http://127.0.0.1:9100').read().decode())"
    finished = [
        line
        for worker in stack.project.containers("worker")
        for line in podman("exec", worker["Names"][0], "python", "-c", scrape).splitlines()
        if line.startswith('nbship_jobs_finished_total{state="succeeded"}')
    ]
    assert sum(float(line.split()[-1]) for line in finished) > 0, finished  # each worker counts what it did


def wait_for(read, good, timeout_s: float):  # type: ignore[no-untyped-def]
    """`read()` until `good` of it, at most `timeout_s`; the last reading (the management API lags by seconds)."""
    deadline = time.monotonic() + timeout_s
    while not good(found := read()) and time.monotonic() < deadline:
        time.sleep(2)
    return found


def test_4_down_and_up_keep_the_jobs_and_the_registry(stack: Stack) -> None:
    project = stack.project
    started = time.monotonic()
    readme(project, "docker compose down --remove-orphans")
    assert not project.containers("api") and not project.containers("rabbitmq")
    readme(project, "docker compose up -d rabbitmq mongo mlflow")
    project.wait_healthy(SERVERS)
    readme(project, "docker compose up -d")
    project.wait_healthy({"api": 1, "worker": 1})
    wait_ready(stack)
    timed("4 down, then up with the same volumes", started)
    with stack.client() as client:
        for job_id in stack.jobs:
            job = client.get(f"/jobs/{job_id}").json()
            assert job["status"] == "succeeded" and job["result"]["probabilities"], job
    from mlflow import MlflowClient

    registry = MlflowClient(stack.mlflow)
    assert [v.version for v in registry.search_model_versions(f"name='{MODEL}'")] == [stack.versions["first"]]
    assert registry.get_model_version_by_alias(MODEL, "champion").version == stack.versions["first"]


@dataclass
class Prober:
    """/predict one row after another while a rollout runs: when each answer came and which version gave it."""

    stack: Stack
    answers: list[tuple[float, str | None]] = field(default_factory=list)  # (time, version; None: failed)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        row = {"instances": digits_rows(1).tolist()}
        with self.stack.client(timeout_s=5) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/predict", json=row)
                    version = answer.json()["model"]["version"] if answer.status_code == 200 else None
                except (httpx.HTTPError, ValueError, KeyError):
                    version = None
                self.answers.append((time.monotonic(), version))
                time.sleep(0.05 if version else 0.2)

    def wait_for(self, version: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.answers and self.answers[-1][1] == version) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert self.answers[-1][1] == version, f"never answered version {version}"

    def figures(self, since: float, old: str) -> dict[str, float]:
        during = [(t, v) for t, v in self.answers if t >= since]
        failed = [t for t, v in during if v is None]
        last_old = max((t for t, v in during if v == old), default=since)
        first_new = min(t for t, v in during if v not in (None, old))
        return {
            "requests": len(during),
            "failed": len(failed),
            "failing_s": (max(failed) - min(failed)) if failed else 0.0,
            "old_version_after_start_s": last_old - since,
            "no_answer_s": first_new - last_old,
            "new_version_after_start_s": first_new - since,
        }


def test_5_a_new_champion_rolled_out_pinned_then_followed(stack: Stack) -> None:
    project = stack.project
    started = time.monotonic()
    stack.versions["second"] = train(stack, epochs=5)  # beats the one-epoch champion: the gate promotes it
    build_image(stack)
    timed("5a train and build the new champion's image", started)
    old, new = stack.versions["first"], stack.versions["second"]
    with Prober(stack) as prober:
        time.sleep(3)
        started = time.monotonic()
        readme(project, "docker compose up -d --force-recreate api worker")
        prober.wait_for(new, 300)
        project.wait_healthy({"api": 1, "worker": 1})
    pinned = prober.figures(started, old)
    timed("5b pinned rollout (recreate)", started)
    print(f"\npinned rollout: {pinned}")

    # Following the alias: the API and the worker switch to whatever @champion names, with no recreate.
    started = time.monotonic()
    readme(project, "echo FOLLOW_ALIAS=champion >> .env && docker compose up -d")
    project.wait_healthy({"api": 1, "worker": 1})
    wait_ready(stack)
    with Prober(stack) as prober:
        prober.wait_for(new, 60)
        switched = time.monotonic()
        readme(project, "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python -m pipeline rollback")
        prober.wait_for(old, 120)
        time.sleep(2)
    following = prober.figures(switched, new)
    timed("5c following the alias (recreate, then a rollback)", started)
    print(f"following: {following}")
    assert following["failed"] == 0, following
    job = submit_one(stack)
    assert job["model"]["version"] == old, "the worker follows the alias too"


def submit_one(stack: Stack) -> dict:
    with stack.client() as client:
        url = client.post("/jobs", json={"instances": digits_rows(2).tolist()}).json()["url"]
        deadline = time.monotonic() + 60
        while (job := client.get(url).json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
    return job


def test_6_the_production_file_publishes_only_the_api(stack: Stack) -> None:
    project = stack.project
    started = time.monotonic()
    readme(project, "docker compose down --remove-orphans")
    readme(project, "docker compose -f compose.yaml up -d")
    project.wait_healthy({**SERVERS, "api": 1, "worker": 1})
    wait_ready(stack)
    timed("6 production file up", started)
    for service in (*SERVERS, "worker"):
        assert project.published(service) == [], f"{service} is published"
    assert project.published("api") == [f"3000/tcp -> 127.0.0.1:{project.ports['API_PORT']}"]
