"""`python -m pipeline train`: execute the notebook with papermill, track it, register and gate the model.

The kernel starts first and spends its first seconds importing TensorFlow; meanwhile this process connects
to MLflow. The notebook starts the MLflow run itself, tagged with this invocation's id, by which it is found.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import gate, lineage, params, registry, tracking
from pipeline.errors import NotebookFailed, PipelineError
from pipeline.lineage import INVOCATION_TAG, MODEL_URI_TAG
from pipeline.quiet import QUIET_ENV
from pipeline.report import html_report
from pipeline.settings import PipelineSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    decision: gate.Decision
    executed_notebook: Path


def train(settings: PipelineSettings, overrides: dict[str, str], progress_bar: bool = True) -> TrainResult:
    declared = params.declared(settings.notebook)
    if "registered_model_name" in declared and "registered_model_name" not in overrides:
        overrides = {**overrides, "registered_model_name": settings.model_name}
    values = params.resolve(declared, overrides)  # bad names and types fail here, before any kernel
    model_name = str(values.get("registered_model_name", settings.model_name))
    tracking.check_reachable(settings.tracking_uri)

    invocation = uuid.uuid4().hex
    executed = settings.runs_dir / invocation / settings.notebook.name
    with ThreadPoolExecutor(max_workers=1) as pool:
        execution = pool.submit(
            _execute, settings, executed, {**values, "pipeline_invocation": invocation}, progress_bar
        )
        client = tracking.connect(settings)
        try:
            execution.result()
        except NotebookFailed:
            run = _find_run(client, settings, invocation) or _failure_run(client, settings, invocation)
            _record(client, run.info.run_id, executed, lineage.run_tags(settings.notebook, values))
            client.set_terminated(run.info.run_id, "FAILED")
            raise

    run = _find_run(client, settings, invocation)
    if run is None:
        raise PipelineError(f"the notebook started no MLflow run (pipeline.notebook.start_run); see {executed}")
    run_id = run.info.run_id
    _record(client, run_id, executed, lineage.run_tags(settings.notebook, values))
    model_uri = run.data.tags.get(MODEL_URI_TAG)
    if not model_uri or settings.gate_metric not in run.data.metrics:
        client.set_terminated(run_id, "FAILED")
        raise PipelineError(
            f"the notebook logged no model or no {settings.gate_metric}; it must call "
            f"pipeline.notebook.log_evaluation and log_model (see {executed})"
        )
    version = registry.register(client, model_name, model_uri, run_id, _version_tags(client.get_run(run_id)))
    decision = gate.run_gate(
        client, model_name, settings.champion_alias, version, settings.gate_metric, settings.gate_margin
    )
    return TrainResult(run_id, model_name, version.version, decision, executed)


def _execute(settings: PipelineSettings, executed: Path, values: dict[str, Any], progress_bar: bool) -> None:
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    executed.parent.mkdir(parents=True, exist_ok=True)
    for key, value in QUIET_ENV.items():  # inherited by the kernel
        os.environ.setdefault(key, value)
    os.environ.update(settings.kernel_env())
    try:
        papermill.execute_notebook(
            str(settings.notebook),
            str(executed),
            parameters=values,
            kernel_name=settings.kernel_name,
            progress_bar=progress_bar,
            cwd=str(settings.notebook.parent),
        )
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            f"cell {exc.cell_index} (execution count {exc.exec_count}) of {settings.notebook.name} raised "
            f"{exc.ename}: {exc.evalue}; nothing was registered. Executed notebook: {executed}"
        ) from None
    except (DeadKernelError, CellTimeoutError) as exc:
        raise NotebookFailed(
            f"the kernel running {settings.notebook.name} stopped ({type(exc).__name__}: {exc}); "
            f"nothing was registered. Executed notebook: {executed}"
        ) from None


def _find_run(client: MlflowClient, settings: PipelineSettings, invocation: str) -> Run | None:
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        return None
    found = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{INVOCATION_TAG}` = '{invocation}'", max_results=1
    )
    return found[0] if found else None


def _failure_run(client: MlflowClient, settings: PipelineSettings, invocation: str) -> Run:
    """A run to keep the executed notebook of a notebook that failed before it started its own."""
    return client.create_run(tracking.experiment_id(client, settings), tags={INVOCATION_TAG: invocation})


def _record(client: MlflowClient, run_id: str, executed: Path, tags: dict[str, str]) -> None:
    """Lineage tags, the executed notebook and its HTML report, on the run."""
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    if executed.exists():
        client.log_artifact(run_id, str(executed), artifact_path="notebook")
        client.log_artifact(run_id, str(html_report(executed)), artifact_path="notebook")


def _version_tags(run: Run) -> dict[str, str]:
    keep = (lineage.TAG_PREFIX, "mlflow.source.git.commit")
    skip = {MODEL_URI_TAG, INVOCATION_TAG}
    return {key: value for key, value in run.data.tags.items() if key.startswith(keep) and key not in skip}
