"""`python -m pipeline train`: execute the notebook with papermill, track it, register and gate the model.

The kernel starts first and spends its first seconds importing TensorFlow; meanwhile this process connects
to MLflow, and the process that checks the logged model where nothing of the notebook is (pipeline.evaluation)
imports what the service imports. The notebook starts the MLflow run itself, tagged with this invocation's
id, by which it is found.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import evaluation, gate, lineage, params, registry, tracking
from pipeline.errors import NotebookFailed, PipelineError
from pipeline.lineage import INVOCATION_ENV, INVOCATION_TAG, MODEL_URI_TAG
from pipeline.names import NAME_PARAMETERS
from pipeline.report import html_report
from pipeline.settings import PipelineSettings
from service.models import metrics
from service.models import registry as read_registry
from service.models.check import Verdict
from service.models.contract import ContractError, read_contract
from service.models.quiet import QUIET_ENV
from service.models.scoring import HeldOut

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from service.models.contract import ModelContract


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    decision: gate.Decision
    executed_notebook: Path
    runtime: Verdict  # which runtime answers the version, and why


def train(settings: PipelineSettings, overrides: dict[str, str], progress_bar: bool = True) -> TrainResult:
    declared = params.declared(settings.notebook)
    # The names the notebook declares take the settings' values (its own, unless MODEL_NAME or EXPERIMENT_NAME
    # is set), and a `-p` of them wins over both: the run, the registry and the notebook agree.
    named = {param: getattr(settings, field) for param, field in NAME_PARAMETERS.items() if param in declared}
    values = params.resolve(declared, named | overrides)  # bad names and types fail here, before any kernel
    settings = settings.model_copy(
        update={field: str(values[param]) for param, field in NAME_PARAMETERS.items() if param in values}
    )
    model_name = settings.model_name
    tracking.check_reachable(settings.tracking_uri)

    invocation = uuid.uuid4().hex
    executed = settings.runs_dir / invocation / settings.notebook.name
    tags = lineage.run_tags(settings.notebook, values)
    # A new store is made before the kernel may open it too; an existing one is only opened, meanwhile the
    # kernel imports TensorFlow.
    client = tracking.create_if_new(settings)
    with ThreadPoolExecutor(max_workers=1) as pool, evaluation.WhereServed() as where_served:
        execution = pool.submit(_execute, settings, executed, values, invocation, progress_bar)
        client = client or tracking.connect(settings)
        try:
            execution.result()
        except NotebookFailed:
            failed = _find_run(client, settings, invocation) or _failure_run(client, settings, invocation)
            _fail(client, failed.info.run_id, tags, executed)
            raise
        found = _find_run(client, settings, invocation)
        if found is None:
            raise PipelineError(
                f"the notebook started no MLflow run (pipeline.notebook.start_run); see {executed}"
            )
        run_id = found.info.run_id
        executed = _named_by_run(executed, settings.runs_dir / run_id)
        # The HTML report (seconds of nbconvert) is made while the version is registered and gated.
        report = pool.submit(html_report, executed)
        try:
            contract, rows, metric, verdict = _checked(client, settings, found, executed, where_served)
        except PipelineError:
            _fail(client, run_id, tags, executed)
            raise
        tags |= evaluation.runtime_tags(verdict)
        _tag(client, run_id, tags)
        version = registry.register(
            client,
            model_name,
            found.data.tags[MODEL_URI_TAG],
            run_id,
            _version_tags({**found.data.tags, **tags}),
            trained_by=lineage.notebook_label(settings.notebook),
        )
        decision = gate.run_gate(
            client, model_name, settings.champion_alias, version, contract, rows, metric, settings.gate_margin
        )
        _log_notebook(client, run_id, executed, report.result())
    return TrainResult(run_id, model_name, str(version.version), decision, executed, verdict)


def _checked(
    client: MlflowClient,
    settings: PipelineSettings,
    found: Run,
    executed: Path,
    where_served: evaluation.WhereServed,
) -> tuple[ModelContract, HeldOut, str, Verdict]:
    """The run's model, its held-out rows, its contract, the gate metric and the runtime to serve it, once the
    model was loaded where nothing of the notebook is, as the service loads it, and answered its rows as in the
    notebook. Anything else is a PipelineError: nothing registered."""
    model_uri = found.data.tags.get(MODEL_URI_TAG)
    if not model_uri:
        raise PipelineError(
            f"the notebook logged no model; it must call pipeline.notebook.log_model (see {executed})"
        )
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = evaluation.held_out_rows(client, found.info.run_id, Path(tmp))
        model_dir = read_registry.download_model(client, model_uri, Path(tmp) / "model")
        try:
            contract = read_contract(model_dir)
        except ContractError as exc:
            raise PipelineError(f"the logged model cannot be served: {exc}") from None
        verdict = where_served.check(model_dir, rows_file)
        rows = HeldOut.load(rows_file)
    metric = settings.gate_metric or metrics.default_gate_metric(contract)
    if metric not in found.data.metrics:
        logged = ", ".join(sorted(key for key in found.data.metrics if metrics.is_metric(key)))
        raise PipelineError(f"GATE_METRIC {metric} was not logged for this model (it logged: {logged})")
    return contract, rows, metric, verdict


def _named_by_run(executed: Path, folder: Path) -> Path:
    """The executed notebook's folder takes the run's id once the run is known (it ran under the invocation's)."""
    executed.parent.rename(folder)
    return folder / executed.name


def _execute(
    settings: PipelineSettings, executed: Path, values: dict[str, Any], invocation: str, progress_bar: bool
) -> None:
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        kernel_env = settings.kernel_env() | {INVOCATION_ENV: invocation}
        with _environment(kernel_env, defaults=QUIET_ENV):  # the kernel inherits it
            papermill.execute_notebook(
                str(settings.notebook),
                str(executed),
                parameters=values,
                kernel_name=settings.kernel_name,
                language="python",  # a notebook saved without language metadata is still a Python one
                progress_bar=progress_bar,
                cwd=str(settings.notebook.parent),
                # ipykernel warns on every start that its local TCP channels are not encrypted, and logs
                # the interrupt papermill sends at shutdown as an error
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
    except PapermillExecutionError as exc:
        first_line = exc.source.strip().splitlines()[0] if exc.source.strip() else ""
        raise NotebookFailed(
            f"cell {_source_index(settings.notebook, exc.source, exc.cell_index)} of {settings.notebook.name} ({first_line!r}) raised "
            f"{exc.ename}: {exc.evalue}; nothing was registered. Executed notebook: {executed}"
        ) from None
    except (DeadKernelError, CellTimeoutError) as exc:
        raise NotebookFailed(
            f"the kernel running {settings.notebook.name} stopped ({type(exc).__name__}: {exc}); "
            f"nothing was registered. Executed notebook: {executed}"
        ) from None


def _source_index(notebook: Path, source: str, fallback: int) -> int:
    """The failing cell's index in the source notebook (papermill adds cells to the executed one)."""
    import nbformat

    for index, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
        if cell.source == source:
            return index
    return fallback


@contextmanager
def _environment(values: dict[str, str], defaults: dict[str, str]) -> Iterator[None]:
    """`values` (and `defaults` where unset) in os.environ for the duration, then as they were."""
    merged = {**{key: value for key, value in defaults.items() if key not in os.environ}, **values}
    saved = {key: os.environ.get(key) for key in merged}
    os.environ.update(merged)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def _tag(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])


def _log_notebook(client: MlflowClient, run_id: str, executed: Path, report: Path) -> None:
    """The executed notebook and its HTML report, as artifacts of the run."""
    client.log_artifact(run_id, str(executed), artifact_path="notebook")
    client.log_artifact(run_id, str(report), artifact_path="notebook")


def _fail(client: MlflowClient, run_id: str, tags: dict[str, str], executed: Path) -> None:
    """Keep what there is of a failed run (lineage, the executed notebook) and mark it failed."""
    _tag(client, run_id, tags)
    if executed.exists():
        _log_notebook(client, run_id, executed, html_report(executed))
    client.set_terminated(run_id, "FAILED")


def _version_tags(run_tags: dict[str, str]) -> dict[str, str]:
    keep = (lineage.TAG_PREFIX, "mlflow.source.git.commit")
    skip = {MODEL_URI_TAG, INVOCATION_TAG}
    return {key: value for key, value in run_tags.items() if key.startswith(keep) and key not in skip}
