"""One session per thing a person does. Run through `./noxw` (installs nox and uv on first use).

Every session installs the locked dependencies (uv.lock) into its own environment with `uv sync --frozen`.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
# Interrupted (Ctrl-C, SIGINT or SIGTERM to nox), a test run gets time to stop every server it started: nox's own
# defaults would SIGKILL pytest half a second later, in the middle of its teardown.
STOPPING = {"interrupt_timeout": 120.0, "terminate_timeout": 60.0}


def _as_ctrl_c(*_: object) -> None:
    """SIGTERM to nox (a CI runner's timeout, `kill`) interrupts the session as Ctrl-C in its terminal does: SIGINT
    to its process group, so that pytest stops its servers and nox waits for it (STOPPING)."""
    os.killpg(os.getpgrp(), signal.SIGINT)


signal.signal(signal.SIGTERM, _as_ctrl_c)
# `serve` and `stack` run beside the registry: they follow @champion unless FOLLOW_ALIAS says otherwise ("" pins).
FOLLOW = {"FOLLOW_ALIAS": os.environ.get("FOLLOW_ALIAS", "champion")}


def pipeline_env(session: nox.Session, notebook: str | None = None) -> dict[str, str]:
    """QUIET, and NOTEBOOK (`notebook`, else the environment's) as an absolute path: a relative one is taken from
    the folder the command was typed in, as `python -m pipeline` takes it, though nox runs sessions from the
    project's folder."""
    notebook = notebook or os.environ.get("NOTEBOOK")
    if not notebook:
        return QUIET
    return QUIET | {"NOTEBOOK": str(Path(session.invoked_from) / Path(notebook).expanduser())}


def packaged(session: nox.Session) -> dict[str, str]:
    """Package the notebook's @champion (NOTEBOOK, or notebooks/train.ipynb) and return the settings that serve
    it (MODEL_NAME, MODEL_TAG): one NOTEBOOK setting is enough for `serve`, `stack` and `container`."""
    command = ("python", "-m", "pipeline", "package", "--env")
    output = session.run(*command, env=pipeline_env(session), silent=True) or ""
    print(next(line for line in output.splitlines() if " as BentoML model " in line))
    return dict(
        line.split("=", 1) for line in output.splitlines() if line.startswith(("MODEL_NAME=", "MODEL_TAG="))
    )


def sync(session: nox.Session, *groups: str) -> None:
    """The locked environment: runtime dependencies plus the named dependency groups."""
    args = ["uv", "sync", "--frozen", "--no-default-groups", *(f"--group={group}" for group in groups)]
    session.run_install(*args, env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location}, silent=True)


@nox.session(python=PYTHON)
def pipeline(session: nox.Session) -> None:
    """Train: execute the notebook (NOTEBOOK, else notebooks/train.ipynb), track the run in MLflow, register and
    gate the model.

    Ends by packaging @champion into the BentoML model store. Extra arguments are `train`'s: notebook parameters
    and the notebook, `./noxw -s pipeline -- --notebook mine.ipynb -p epochs 10`.
    """
    sync(session)
    option = argparse.ArgumentParser(add_help=False)
    option.add_argument("--notebook")
    given, parameters = option.parse_known_args(session.posargs)
    env = pipeline_env(session, given.notebook)  # the notebook that is trained is the one that is packaged
    session.run("python", "-m", "pipeline", "train", *parameters, env=env)
    session.run("python", "-m", "pipeline", "package", env=env)


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Serve @champion on 127.0.0.1 (PORT, default 3000; see service/settings.py): package it, `bentoml serve`,
    following the alias (a new champion is switched to while serving; FOLLOW_ALIAS= pins the packaged one)."""
    sync(session)
    served = packaged(session)
    session.run(
        "bentoml", "serve", "service.service:PredictionService", *session.posargs, env=QUIET | FOLLOW | served
    )


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Package @champion and build the service into a Bento (`bentoml build` with bentofile.yaml)."""
    sync(session)
    session.run("python", "-m", "pipeline", "build", env=pipeline_env(session))


@nox.session(python=PYTHON)
def container(session: nox.Session) -> None:
    """Build the Bento, then its container image (Docker if a daemon answers, else podman or buildah; the base
    image is made locally, nothing is pulled). See pipeline/container.py for the settings."""
    sync(session)
    session.run("python", "-m", "pipeline", "container", env=pipeline_env(session))


@nox.session(python=PYTHON)
def monitor(session: nox.Session) -> None:
    """What the served @champion met: drift against its held-out rows, live scores from labels, records dropped;
    an HTML report logged to its run. Reads the records in the job store (MONGO_URL). Extra arguments are
    `monitor`'s: `./noxw -s monitor -- --since 2h`, `-- --version 3`."""
    sync(session)
    session.run("python", "-m", "pipeline", "monitor", *session.posargs, env=pipeline_env(session))


@nox.session(name="mlflow-ui", python=PYTHON)
def mlflow_ui(session: nox.Session) -> None:
    """The MLflow UI on the configured store, on 127.0.0.1 (UI_PORT, default 5000)."""
    sync(session)
    session.run("python", "-m", "pipeline", "ui", env=QUIET)


# Two test processes, each taking whole files (pytest-xdist): on two cores one computes while the other waits for a
# server, a kernel or an image; `-- -n 0` runs in one process. Files are handed out in the order tests/conftest.py
# collects them (the longest first), not by their count of tests. The ten slowest tests and files are listed at the
# end, to keep docs/testing.md's table current.
TEST_PROCESSES = ["-n", "2", "--dist", "loadfile", "--no-loadscope-reorder", "--durations", "10"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, integration and end-to-end tests, in two processes (`-- -m "not e2e and not slow"`: the quick tier,
    about a minute; other pytest arguments pass through). Times and tiers: docs/testing.md."""
    sync(session, "dev")
    session.run("pytest", *TEST_PROCESSES, *session.posargs, env=QUIET, **STOPPING)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy on the packages."""
    sync(session, "dev")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "pipeline", "service")


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Schemathesis on the served service's OpenAPI document, with and without an API key, and with all its checks
    in process on a tiny model of each request form (tests/fuzz): no 5xx, every 4xx JSON with a message, the
    document true. Needs RabbitMQ on 127.0.0.1:5672, as `tests` does."""
    sync(session, "dev")
    session.run("pytest", "tests/fuzz", "--fuzz", *session.posargs, env=QUIET, **STOPPING)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: `./noxw -s bench -- pipeline` or `-- serve` (needs wrk) (see docs/benchmarks/)."""
    sync(session, "dev", "bench")
    session.run("python", "tests/benchmarks/run.py", *session.posargs, env=QUIET)


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """Chaos soak of the job layer: 5,000 jobs through the job API while workers are SIGKILLed and RabbitMQ and
    the store restarted, against a no-fault baseline, then with frequent kills of workers holding jobs
    (docs/benchmarks/chaos.md). Packages @champion first."""
    sync(session, "dev")
    session.run("python", "tests/benchmarks/run.py", "chaos", *session.posargs, env=QUIET | packaged(session))


@nox.session(python=PYTHON)
def stack(session: nox.Session) -> None:
    """Everything on this machine without Docker: RabbitMQ, a MongoDB-protocol server, MLflow UI, the service
    and a worker (see service/stack/); Ctrl-C stops what it started. Packages @champion first, as `serve` does."""
    sync(session, "dev")
    served = packaged(session)
    session.run("python", "-m", "service.stack", env=QUIET | FOLLOW | served)
