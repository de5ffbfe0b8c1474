"""A logged model checked the way the service runs it, before its version is registered.

The logged model is loaded by the service's own loader, in a process of its own, and predicts the rows the run
logged: a model that does not load there, answers of another shape than the signature says, or other values than
the notebook saw, refuse the run. Reading a version's files,
held-out rows and scores is the service's (service.models.registry and service.models.scoring): a follower in the
API checks a version the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError
from service.models.check import Verdict
from service.models.contract import ContractError
from service.models.lineage import RUNTIME_REASON_TAG, RUNTIME_TAG
from service.models.quiet import QUIET_ENV
from service.models.scoring import NoHeldOutRows, held_out_file

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from service.models.loader import LoadedModel


def held_out_rows(client: MlflowClient, run_id: str, folder: Path | None = None) -> Path:
    """The run's held-out rows' file (in `folder`, if given); a PipelineError when it logged none."""
    try:
        return Path(held_out_file(client, run_id, folder))
    except NoHeldOutRows as exc:
        raise PipelineError(str(exc)) from None


def runtime_tags(verdict: Verdict) -> dict[str, str]:
    """The run's and the version's tags saying which runtime answers it and why (service/models/lean.py)."""
    return {RUNTIME_TAG: verdict.runtime, RUNTIME_REASON_TAG: verdict.reason}


def load(model_dir: Path, name: str, version: str) -> LoadedModel:
    from service.models.loader import load_model_dir

    try:
        return load_model_dir(model_dir, name, version)
    except ContractError as exc:
        raise PipelineError(f"the logged model cannot be served: {exc}") from None


class WhereServed:
    """The check where the model is served (service.models.check), its process started ahead: a fresh Python
    with nothing of the notebook, not even its folder (its current folder is an empty one), that imports what
    the service imports while the kernel trains, and checks one logged model when asked."""

    def __init__(self) -> None:
        self._empty = tempfile.TemporaryDirectory()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "service.models.check", "-"],
            cwd=self._empty.name,
            env={**QUIET_ENV, **os.environ, "PYTHONPATH": ""},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> WhereServed:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def check(self, model_dir: Path, rows: Path) -> Verdict:
        """Load the logged model as the service does and have it answer the held-out rows as the notebook's
        model did, then decide its runtime; a PipelineError saying why it would not serve otherwise."""
        (verdict,) = self.verdicts([(model_dir, rows)])
        if verdict.problem:
            raise PipelineError(
                f"the logged model does not serve where it is served: {verdict.problem}; nothing registered"
            )
        return verdict

    def verdicts(self, models: Sequence[tuple[Path, Path]]) -> list[Verdict]:
        """Each logged model (its folder, its held-out rows) checked in turn, in the one process: why it would
        not serve as the notebook's model answered (None when it would), and which runtime answers it. The
        process ends after them."""
        stdout, stderr = self._process.communicate(
            json.dumps([str(path) for model in models for path in model]) + "\n"
        )
        answered = [Verdict(**json.loads(line)) for line in stdout.splitlines()]
        if len(answered) < len(models):  # the process died on the way (a crash in native code, a kill)
            ended = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {self._process.returncode}"
            answered += [Verdict(ended)] * (len(models) - len(answered))
        return answered

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.communicate()
        self._empty.cleanup()
