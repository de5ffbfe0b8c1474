"""The champion gate: a new version takes `@champion` only if it beats it on the same held-out rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline import registry
from pipeline.lineage import DATA_SHA_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


@dataclass(frozen=True)
class Decision:
    promote: bool
    metric: str
    margin: float
    candidate_version: str
    candidate_score: float
    champion_version: str | None
    champion_score: float | None

    def summary(self, alias: str) -> str:
        candidate = f"version {self.candidate_version} {self.metric}={self.candidate_score:.4f}"
        if self.champion_version is None:
            return f"promoted: {candidate} is the first @{alias}"
        champion = f"@{alias} version {self.champion_version} {self.metric}={self.champion_score:.4f}"
        verdict = "promoted" if self.promote else "kept the champion"
        relation = "beats" if self.promote else "does not beat"
        return f"{verdict}: {candidate} {relation} {champion} by the margin {self.margin:g}"

    def tags(self) -> dict[str, str]:
        return {
            "gate.decision": "promoted" if self.promote else "refused",
            "gate.metric": self.metric,
            "gate.margin": repr(self.margin),
            "gate.candidate_score": repr(self.candidate_score),
            "gate.champion_version": self.champion_version or "",
            "gate.champion_score": "" if self.champion_score is None else repr(self.champion_score),
        }


def decide(
    metric: str,
    margin: float,
    candidate_version: str,
    candidate_score: float,
    champion_version: str | None,
    champion_score: float | None,
) -> Decision:
    """Promote when there is no champion, or when the candidate is better by at least `margin` (and better)."""
    promote = champion_score is None or (
        candidate_score > champion_score and candidate_score - champion_score >= margin
    )
    return Decision(
        promote, metric, margin, candidate_version, candidate_score, champion_version, champion_score
    )


def champion_score(client: MlflowClient, champion: ModelVersion, metric: str, data_sha256: str) -> float:
    """The champion's score on the candidate's test rows.

    When the champion's run logged its score on the very same split (same data hash), that figure is used;
    otherwise the champion is loaded and scored on the current split.
    """
    run = client.get_run(champion.run_id) if champion.run_id else None
    if run is not None and run.data.tags.get(DATA_SHA_TAG) == data_sha256 and metric in run.data.metrics:
        return run.data.metrics[metric]
    return rescore(client, champion, metric)


def rescore(client: MlflowClient, version: ModelVersion, metric: str) -> float:
    """Load the version from the client's store and score it on the current split.

    The location is resolved through the client, never through the process's global tracking URI.
    """
    import mlflow

    from pipeline.data import load_split
    from pipeline.evaluate import score
    from pipeline.quiet import quiet_keras

    source = str(version.source)
    if source.startswith("models:/m-"):  # an MLflow 3 logged model
        source = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=client.tracking_uri)
    quiet_keras()
    split = load_split()
    probabilities = mlflow.pyfunc.load_model(local).predict(split.x_test)
    return score(probabilities, split.y_test)[metric]


def run_gate(
    client: MlflowClient, name: str, alias: str, candidate: ModelVersion, metric: str, margin: float
) -> Decision:
    """Decide, then move the alias or leave it; the version is tagged with the decision and both figures."""
    run = client.get_run(str(candidate.run_id))
    current = registry.holder(client, name, alias)
    current_score = None
    if current is not None:
        current_score = champion_score(client, current, metric, run.data.tags.get(DATA_SHA_TAG, ""))
    decision = decide(
        metric,
        margin,
        str(candidate.version),
        run.data.metrics[metric],
        str(current.version) if current else None,
        current_score,
    )
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, candidate.version, key, value)
    if decision.promote:
        registry.move_alias(client, name, alias, str(candidate.version), action="gate")
    return decision
