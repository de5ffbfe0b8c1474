"""An example notebook end to end, for the e2e tests of the examples: trained by `python -m pipeline train` (one
epoch: the tests compare the service's answers with the notebook model's own, whatever its quality) into a store
of its own, packaged, then served by `bentoml serve` from the project's folder while a real
`python -m service.jobs.worker` starts beside it (both import TensorFlow and load the model: started together,
they wait once), with job settings of their own."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from support.job_servers import delete_queues, fresh_job_settings, settings_env
from support.processes import free_port, running
from support.served import PROJECT_ROOT, served_service
from tests.conftest import pipeline_command
from tests.e2e.test_jobs_served import finished

ROWS = 20  # held-out rows the tests send (at most MAX_ROWS, 64)
REGISTERED = re.compile(r"^run (\w+): registered (\S+) version (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class Served:
    model: str  # the registered model's name, as the notebook's parameters cell declares it
    version: str
    run_id: str
    train_stdout: str
    url: str
    client: httpx.Client
    rows: dict[str, np.ndarray]  # the run's first ROWS held-out rows, by input name
    outputs: dict[str, np.ndarray]  # the notebook model's own answers for them, by output name
    artifacts: list[str]  # the logged model's files under code/
    env: dict[str, str]  # the store, the model and the job settings, as the service and the worker have them
    worker_log: Path

    def job(self, body: dict[str, Any]) -> dict[str, Any]:
        """The job's view once the worker has answered it; it must have succeeded."""
        submitted = self.client.post("/jobs", json=body)
        assert submitted.status_code == 202, submitted.text
        view = finished(self.client, submitted.json()["url"])
        assert view["status"] == "succeeded", (view, self.worker_log.read_text(errors="replace")[-3000:])
        return view


def pipeline(env: dict[str, str], *args: str) -> str:
    """`python -m pipeline ARGS`; its stdout, once it succeeded."""
    done = pipeline_command(env, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@contextmanager
def trained_and_served(notebook: Path, mongo_url: str, amqp_url: str, folder: Path) -> Iterator[Served]:
    import mlflow

    from service.models.scoring import held_out

    data_dir = folder / "store"
    settings = fresh_job_settings(mongo_url, amqp_url)
    unset = ("MLFLOW_TRACKING_URI", "MODEL_NAME", "MODEL_TAG")  # the notebook names its model
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env |= {"DATA_DIR": str(data_dir), "NOTEBOOK": str(notebook), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env |= settings_env(settings)
    stdout = pipeline(env, "train", "-p", "epochs", "1", "--no-progress")
    found = REGISTERED.search(stdout)
    assert found, stdout
    run_id, model, version = found.groups()
    pipeline(env, "package")

    client = mlflow.MlflowClient(f"sqlite:///{data_dir / 'mlflow.db'}")
    held = held_out(client, run_id)
    logged = client.get_logged_model(client.get_model_version(model, version).source.removeprefix("models:/"))
    model_dir = Path(logged.artifact_location.removeprefix("file://"))
    # Neither MODEL_TAG nor MODEL_NAME: the service and the worker serve what `package` recorded in DATA_DIR, as a
    # bare `bentoml serve service.service:PredictionService` does after it.
    worker = [sys.executable, "-m", "service.jobs.worker"]
    worker_log = folder / "worker.log"
    try:
        with (
            running(worker, lambda: True, "worker", worker_log, env=env, cwd=PROJECT_ROOT),
            served_service(free_port(), env | {"WORKERS": "1"}, folder / "service.log") as url,
            httpx.Client(base_url=url, timeout=30) as http,
        ):
            yield Served(
                model=model,
                version=version,
                run_id=run_id,
                train_stdout=stdout,
                url=url,
                client=http,
                rows={name: values[:ROWS] for name, values in held.x.items()},
                outputs={name: values[:ROWS] for name, values in held.outputs.items()},
                artifacts=sorted(str(path.relative_to(model_dir)) for path in model_dir.glob("code/*")),
                env=env | {"MODEL_NAME": model},
                worker_log=worker_log,
            )
    finally:
        delete_queues(settings)
