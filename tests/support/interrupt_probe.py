"""Run only by tests/e2e/test_interrupted_run.py (`./noxw -s tests -- tests/support/interrupt_probe.py`): a test run
that starts servers as the tests do (a MongoDB-protocol server, an MLflow server with its worker), says so in the
file NBSHIP_PROBE_READY names, then waits to be interrupted."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipeline.settings import PipelineSettings
from pipeline.ui import ui_command
from support.processes import free_port, http_ok, running


def test_holds_servers_until_interrupted(mongo_url: str, tmp_path: Path) -> None:
    port = free_port()
    settings = PipelineSettings(data_dir=tmp_path, mlflow_tracking_uri=None, ui_port=port, _env_file=None)
    url = f"http://127.0.0.1:{port}/health"
    with running(ui_command(settings), http_ok(url), "mlflow server", tmp_path / "mlflow.log"):
        Path(os.environ["NBSHIP_PROBE_READY"]).write_text(str(os.getpid()))
        time.sleep(600)
