"""Promotion by hand (`python -m pipeline promote VERSION`): both scores shown, a worse version refused unless
forced (and then audited as forced), a version that already holds the alias left alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline import gate, registry
from pipeline.errors import AliasError, PipelineError
from pipeline.lineage import DATA_SHA_TAG
from service.models import metrics
from service.models import registry as read_registry
from service.models.contract import ContractError
from service.models.scoring import NoHeldOutRows, held_out

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


@dataclass(frozen=True)
class Promotion:
    metric: str
    version: str
    score: float | None
    previous: str | None  # the version that held the alias before, None when none did
    previous_score: float | None
    moved: bool  # False: the version already held the alias
    forced: bool

    def summary(self, name: str, alias: str) -> str:
        to = _scored(self.version, self.metric, self.score)
        if not self.moved:
            return f"version {self.version} already holds @{alias} of {name} ({to}); nothing changed"
        before = (
            "(none)" if self.previous is None else _scored(self.previous, self.metric, self.previous_score)
        )
        forced = " (forced)" if self.forced else ""
        return f"@{alias} of {name}: {before} -> {to}{forced}"


def promote(
    client: MlflowClient, name: str, alias: str, version: str, metric: str | None, force: bool = False
) -> Promotion:
    """Give `alias` to `version` unless the current holder scores better on `metric` (default: the task's gate
    metric), or takes other requests (another contract); then only with `force`."""
    candidate = registry.version(client, name, version)
    current = read_registry.holder(client, name, alias)
    metric = metric or _task_metric(client, candidate)
    scores = _own_scores(client, candidate)
    score = scores.get(metric)
    if current is None:
        registry.move_alias(client, name, alias, version, action="promote")
        return Promotion(metric, version, score, None, None, moved=True, forced=False)
    previous = str(current.version)
    if previous == version:
        previous_score = _own_scores(client, current).get(metric)
        return Promotion(metric, version, score, previous, previous_score, moved=False, forced=False)
    differs = _contract_differs(client, candidate, current)
    held = {} if differs else _champion_scores(client, current, candidate)
    previous_score = held.get(metric)
    # Worse: the holder would win the gate against the candidate (better on the metric, or tied and better on
    # its tie-breaker). An equal version may be promoted by hand.
    worse = (
        bool(differs)
        or score is None
        or (previous_score is not None and gate.decide(metric, 0.0, previous, held, version, scores).promote)
    )
    if worse and not force:
        champion = f"@{alias} {_scored(previous, metric, previous_score)}"
        if differs:
            problem = f"version {version} answers other requests than @{alias} version {previous} ({differs})"
        elif score is None:
            problem = f"version {version} has no {metric} to compare with {champion}"
        else:
            problem = f"{_scored(version, metric, score)} is worse than {champion}"
        raise AliasError(f"{problem}; give --force to promote it anyway (audited as forced)")
    registry.move_alias(client, name, alias, version, action="promote", forced=worse)
    return Promotion(metric, version, score, previous, previous_score, moved=True, forced=worse)


def _own_scores(client: MlflowClient, version: ModelVersion) -> dict[str, float]:
    return dict(client.get_run(version.run_id).data.metrics) if version.run_id else {}


def _task_metric(client: MlflowClient, version: ModelVersion) -> str:
    """The gate's default metric for the version's contract (its first output's task); a classifier's when the
    version has no readable model (it is refused for that anyway, unless forced)."""
    from mlflow.exceptions import MlflowException

    try:
        return metrics.default_gate_metric(read_registry.contract_at(client, str(version.source)))
    except (MlflowException, OSError, ContractError):
        return metrics.DEFAULT_GATE_METRIC["classification"]


def _champion_scores(
    client: MlflowClient, champion: ModelVersion, candidate: ModelVersion
) -> dict[str, float]:
    """The holder's scores on the candidate's held-out rows, as the gate judges it; none if they cannot be had."""
    from mlflow.exceptions import MlflowException

    data_sha = _run_tag(client, candidate, DATA_SHA_TAG)
    try:
        return gate.champion_scores(
            client, champion, lambda: held_out(client, str(candidate.run_id)), data_sha
        )
    except (MlflowException, OSError, KeyError, PipelineError, ContractError, NoHeldOutRows):
        return {}


def _contract_differs(client: MlflowClient, candidate: ModelVersion, current: ModelVersion) -> str | None:
    """How the two versions' contracts differ; None when they match or either cannot be read."""
    from mlflow.exceptions import MlflowException

    try:
        ours = read_registry.contract_at(client, str(candidate.source))
        theirs = read_registry.contract_at(client, str(current.source))
    except (MlflowException, OSError, ContractError):
        return None
    return ours.differs_from(theirs)


def _run_tag(client: MlflowClient, version: ModelVersion, tag: str) -> str:
    return client.get_run(version.run_id).data.tags.get(tag, "") if version.run_id else ""


def _scored(version: str, metric: str, score: float | None) -> str:
    figure = "unknown" if score is None else f"{score:.4f}"
    return f"version {version} {metric}={figure}"
