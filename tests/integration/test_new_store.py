"""A new SQLite tracking store is made by one process before any other opens it (pipeline/tracking.py,
`create_if_new`, which `python -m pipeline train` calls before the notebook's kernel starts).

Two processes opening one new SQLite file at once both migrate it and one fails (alembic's "Online migration
expected to match one row", "duplicate column name": 6 of 11 first trainings on a loaded 2-core machine). The
race is reproduced without a training: a process standing for the kernel opens each new store as the notebook's
`start_run` does, the moment the pipeline's side has done what `train` does before starting the kernel, while
this process goes on using the store, with both cores busy.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.processes import spawn, stop

from pipeline import tracking
from pipeline.settings import PipelineSettings

ROUNDS = 3  # each makes a store: about 12 s on a loaded 2-core machine
# What the notebook's kernel does in pipeline.notebook.start_run, for each store URI read from stdin.
KERNEL = """
import sys
import mlflow
from pipeline.settings import PipelineSettings
from pipeline.tracking import connect, experiment_id

for uri in sys.stdin:
    try:
        settings = PipelineSettings(mlflow_tracking_uri=uri.strip(), experiment_name="kernel", _env_file=None)
        mlflow.start_run(experiment_id=experiment_id(connect(settings), settings))
        mlflow.end_run()
        print("ok", flush=True)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}".replace("\\n", " "), flush=True)
"""


@pytest.fixture
def busy_cores() -> Iterator[None]:
    burners = [spawn([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for burner in burners:
            stop(burner)


@pytest.fixture
def kernel() -> Iterator[subprocess.Popen[str]]:
    process = spawn([sys.executable, "-c", KERNEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        stop(process)


def migrated(path: Path) -> bool:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


@pytest.mark.slow
def test_a_new_sqlite_store_is_made_before_another_process_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy_cores: None, kernel: subprocess.Popen[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # restored afterwards: connecting sets it for this process
    assert kernel.stdin is not None and kernel.stdout is not None
    for number in range(ROUNDS):
        path = tmp_path / f"store-{number}" / "mlflow.db"  # its folder is new too
        named = path if number % 2 else path.relative_to(tmp_path)  # relative to the current folder, or not
        settings = PipelineSettings(
            data_dir=tmp_path / "data", mlflow_tracking_uri=f"sqlite:///{named}", _env_file=None
        )
        assert settings.tracking_uri == f"sqlite:///{path}"  # every process given it opens the same file

        client = tracking.create_if_new(settings)  # what `train` does before it starts the kernel
        assert client is not None and migrated(path)
        kernel.stdin.write(f"{settings.tracking_uri}\n")
        kernel.stdin.flush()
        tracking.experiment_id(client, settings)  # meanwhile the pipeline uses it, as `train` does
        client.search_experiments()
        assert kernel.stdout.readline().strip() == "ok"
        assert tracking.create_if_new(settings) is None  # made once


def test_a_store_that_is_not_a_new_file_is_not_made(tmp_path: Path) -> None:
    for uri in ("http://127.0.0.1:5000", "sqlite:///:memory:", "postgresql://db/mlflow"):
        assert tracking.create_if_new(PipelineSettings(mlflow_tracking_uri=uri, _env_file=None)) is None
