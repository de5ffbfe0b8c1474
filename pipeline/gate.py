"""The champion gate: a new version takes `@champion` only if it beats it on the candidate's own held-out rows.

The metric's direction is known (pipeline.metrics): higher accuracy, lower RMSE. A champion with another
contract (input, output, task, class or feature names) answers other requests: it is not comparable, the gate
keeps it and says so, and `python -m pipeline promote VERSION --force` stays the audited way to switch by hand.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
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
        relation = "beats" if self.promote else "does not beat"
        direction = "higher" if metrics.HIGHER_IS_BETTER[self.metric] else "lower"
        return f"{verdict}: {candidate} {relation} {champion} by the margin {self.margin:g} ({direction} is better)"

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
        return tags


def decide(
    metric: str,
    margin: float,
    candidate_version: str,
    candidate_score: float,
    champion_version: str | None,
    champion_score: float | None,
) -> Decision:
    """Promote when there is no champion, or when the candidate is better by at least `margin` (and better)."""
    promote = champion_score is None or metrics.better(metric, candidate_score, champion_score, margin)
    return Decision(
        promote, metric, margin, candidate_version, candidate_score, champion_version, champion_score
    )


def champion_score(
    client: MlflowClient,
    champion: ModelVersion,
    metric: str,
    rows: Callable[[], HeldOut],
    data_sha256: str,
) -> float:
    """The champion's score on the candidate's held-out rows.

    When the champion's run logged its score on the very same rows (same data hash), that figure is used;
    otherwise the champion is loaded as the service loads it and scored on the candidate's rows.
    """
    run = client.get_run(champion.run_id) if champion.run_id else None
    if run is not None and run.data.tags.get(DATA_SHA_TAG) == data_sha256 and metric in run.data.metrics:
        return run.data.metrics[metric]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = read_registry.download_model(client, str(champion.source), Path(tmp))
        loaded = evaluation.load(model_dir, champion.name, str(champion.version))
        return score_on(loaded, rows())[metric]


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
    candidate_score = run.data.metrics[metric]
    if current is None:
        decision = decide(metric, margin, str(candidate.version), candidate_score, None, None)
    else:
        differs = contract.differs_from(read_registry.contract_at(client, str(current.source)))
        if differs:
            decision = Decision(
                False,
                metric,
                margin,
                str(candidate.version),
                candidate_score,
                str(current.version),
                None,
                differs,
            )
        else:
            score = champion_score(client, current, metric, lambda: rows, run.data.tags.get(DATA_SHA_TAG, ""))
            decision = decide(
                metric, margin, str(candidate.version), candidate_score, str(current.version), score
            )
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, candidate.version, key, value)
    if decision.promote:
        registry.move_alias(client, name, alias, str(candidate.version), action="gate")
    return decision
