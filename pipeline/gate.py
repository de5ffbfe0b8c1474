"""The champion gate: a new version takes `@champion` only if it beats it on the candidate's own held-out rows.

The metric's direction is known (service.models.metrics): higher accuracy, lower RMSE; two versions that tie on
it are told apart by a second metric (its tie-breaker). A champion with another
contract (input, output, task, class or feature names) answers other requests: it is not comparable, the gate
keeps it and says so, and `python -m pipeline promote VERSION --force` stays the audited way to switch by hand.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import evaluation, registry
from pipeline.lineage import DATA_SHA_TAG
from service.models import metrics
from service.models import registry as read_registry
from service.models.scoring import HeldOut, score_on

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from service.models.contract import ModelContract


@dataclass(frozen=True)
class Decision:
    promote: bool
    metric: str
    margin: float
    candidate_version: str
    candidate_score: float
    champion_version: str | None
    champion_score: float | None
    not_comparable: str | None = None  # why the champion cannot be compared with the candidate
    # When the gate metric ties: the metric that decided, and both versions' figures on it.
    tie_breaker: str | None = None
    candidate_tie_score: float | None = None
    champion_tie_score: float | None = None

    def summary(self, alias: str) -> str:
        candidate = f"version {self.candidate_version} {self.metric}={self.candidate_score:.4f}"
        if self.champion_version is None:
            return f"promoted: {candidate} is the first @{alias}"
        if self.not_comparable:
            return (
                f"kept the champion: @{alias} version {self.champion_version} is not comparable with version "
                f"{self.candidate_version} ({self.not_comparable}); switch by hand with "
                f"`python -m pipeline promote {self.candidate_version} --force`, or register under another MODEL_NAME"
            )
        champion = f"@{alias} version {self.champion_version} {self.metric}={self.champion_score:.4f}"
        verdict = "promoted" if self.promote else "kept the champion"
        if self.tie_breaker is not None:
            relation = "beats it" if self.promote else "does not beat it"
            return (
                f"{verdict}: {candidate} ties {champion} within the margin {self.margin:g}, and {relation} on the "
                f"tie-breaker {self.tie_breaker} ({self.candidate_tie_score:.4f} against "
                f"{self.champion_tie_score:.4f}, {_direction(self.tie_breaker)} is better)"
            )
        relation = "beats" if self.promote else "does not beat"
        return (
            f"{verdict}: {candidate} {relation} {champion} by the margin {self.margin:g} "
            f"({_direction(self.metric)} is better)"
        )

    def tags(self) -> dict[str, str]:
        tags = {
            "gate.decision": "promoted" if self.promote else "refused",
            "gate.metric": self.metric,
            "gate.margin": repr(self.margin),
            "gate.candidate_score": repr(self.candidate_score),
            "gate.champion_version": self.champion_version or "",
            "gate.champion_score": "" if self.champion_score is None else repr(self.champion_score),
        }
        if self.not_comparable:
            tags["gate.not_comparable"] = self.not_comparable
        if self.tie_breaker is not None:
            tags["gate.tie_breaker"] = self.tie_breaker
            tags["gate.candidate_tie_score"] = repr(self.candidate_tie_score)
            tags["gate.champion_tie_score"] = repr(self.champion_tie_score)
        return tags


def _direction(metric: str) -> str:
    return "higher" if metrics.higher_is_better(metric) else "lower"


def decide(
    metric: str,
    margin: float,
    candidate_version: str,
    candidate: Mapping[str, float],
    champion_version: str | None,
    champion: Mapping[str, float] | None,
) -> Decision:
    """Promote when there is no champion, or when the candidate beats it on `metric` by at least `margin`. When
    the two tie on it (within the margin: with none, equal), the tie-breaker metric decides: the candidate must be
    strictly better on it (metrics.TIE_BREAKER)."""
    score = candidate[metric]
    if champion is None:
        return Decision(True, metric, margin, candidate_version, score, None, None)
    held = champion[metric]
    decision = Decision(
        metrics.better(metric, score, held, margin),
        metric,
        margin,
        candidate_version,
        score,
        champion_version,
        held,
    )
    breaker = metrics.tie_breaker(metric) or ""
    if not metrics.ties(metric, score, held, margin) or breaker not in candidate or breaker not in champion:
        return decision
    return replace(
        decision,
        promote=metrics.better(breaker, candidate[breaker], champion[breaker]),
        tie_breaker=breaker,
        candidate_tie_score=candidate[breaker],
        champion_tie_score=champion[breaker],
    )


def champion_scores(
    client: MlflowClient,
    champion: ModelVersion,
    rows: Callable[[], HeldOut],
    data_sha256: str,
) -> dict[str, float]:
    """The champion's scores on the candidate's held-out rows.

    When the champion's run logged its scores on the very same rows (same data hash), those figures are used;
    otherwise the champion is loaded as the service loads it and scored on the candidate's rows.
    """
    run = client.get_run(champion.run_id) if champion.run_id else None
    if run is not None and run.data.tags.get(DATA_SHA_TAG) == data_sha256:
        return {key: value for key, value in run.data.metrics.items() if metrics.is_metric(key)}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = read_registry.download_model(client, str(champion.source), Path(tmp))
        loaded = evaluation.load(model_dir, champion.name, str(champion.version))
        return score_on(loaded, rows())


def run_gate(
    client: MlflowClient,
    name: str,
    alias: str,
    candidate: ModelVersion,
    contract: ModelContract,
    rows: HeldOut,
    metric: str,
    margin: float,
) -> Decision:
    """Decide, then move the alias or leave it; the version is tagged with the decision and both figures."""
    run = client.get_run(str(candidate.run_id))
    current = read_registry.holder(client, name, alias)
    scores = run.data.metrics
    if current is None:
        decision = decide(metric, margin, str(candidate.version), scores, None, None)
    else:
        differs = contract.differs_from(read_registry.contract_at(client, str(current.source)))
        if differs:
            decision = Decision(
                False,
                metric,
                margin,
                str(candidate.version),
                scores[metric],
                str(current.version),
                None,
                differs,
            )
        else:
            held = champion_scores(client, current, lambda: rows, run.data.tags.get(DATA_SHA_TAG, ""))
            decision = decide(metric, margin, str(candidate.version), scores, str(current.version), held)
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, candidate.version, key, value)
    if decision.promote:
        registry.move_alias(client, name, alias, str(candidate.version), action="gate")
    return decision
