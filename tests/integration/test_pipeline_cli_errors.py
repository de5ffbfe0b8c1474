"""Bad input to `python -m pipeline`: one clear line, a non-zero exit, and nothing started or written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.processes import free_port


def pipeline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {"DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "epoch", "3"], "unknown parameter 'epoch'"),
        (["-p", "epochs", "many"], "parameter 'epochs' expects int"),
        (["-p", "learning_rate", "fast"], "parameter 'learning_rate' expects float"),
        (["-p", "learning_rate", "-1"], "parameter 'learning_rate' must be in (0, 1], got -1.0"),
        (["-p", "epochs", "0"], "parameter 'epochs' must be in [1, 1000], got 0"),
    ],
)
def test_bad_parameters_fail_before_any_kernel_or_store(env, tmp_path, args, expected):
    result = pipeline("train", *args, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {result.stderr.strip().removeprefix('error: ')}"
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # no store, no run folder: nothing was started


def test_unreachable_tracking_server_is_one_line(env):
    url = f"http://127.0.0.1:{free_port()}"
    result = pipeline("train", env={**env, "MLFLOW_TRACKING_URI": url})
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: MLflow tracking server {url} is unreachable")
    assert "Traceback" not in result.stderr


def test_rollback_without_a_champion_is_refused(env):
    result = pipeline("rollback", env={**env, "MODEL_NAME": "never-registered"})
    assert result.returncode == 2
    assert "has no @champion to roll back" in result.stderr
