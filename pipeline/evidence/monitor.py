"""`python -m pipeline monitor`: what the served version has met, against its own held-out rows.

For one version (the alias's holder, `@champion`, unless `--version N`), over its window (every record kept, or
those since `--since`): how many requests and rows it answered, how many were sampled, dropped and labelled;
per input feature and per output a drift test against the version's reference (pipeline/evidence/drift.py);
the share of values outside the held-out range; the live scores from labels. The window is enough to say
anything once it holds `--min-rows` sampled rows (100 by default: below that a KS test misses all but gross
shifts). A table is printed; an HTML report with a picture of each drifted feature is written and logged to
the version's run (`monitor/`), where the MLflow UI shows it.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.evidence import drift, live, window
from service.models import reference as references
from service.models import registry as read_registry
from service.models.contract import ModelContract
from service.models.scoring import NoHeldOutRows, held_out

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from pymongo.database import Database

MIN_ROWS = 100
SHOWN = 10  # features in the printed table, the most drifted first
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class Report:
    window: window.Window
    contract: ModelContract
    alias: str | None  # the alias the version holds, if it holds the one served
    reference: dict[str, Any]
    reference_made_now: (
        bool  # logged before references were made: made from its held-out rows for this report
    )
    inputs: list[drift.Drift]
    outputs: list[drift.Drift]
    scores: list[live.LiveScore]
    min_rows: int
    run_id: str

    @property
    def enough(self) -> bool:
        return self.window.sampled_rows >= self.min_rows

    @property
    def drifted_inputs(self) -> list[drift.Drift]:
        return [d for d in self.inputs if d.drifted]

    def summary_lines(self) -> list[str]:
        w = self.window
        held = f" (@{self.alias})" if self.alias else ""
        span = f"{_when(w.first)} to {_when(w.last)}" if w.first else "no records yet"
        labelled = len(w.labelled)
        share = f" ({labelled / w.rows:.1%} of rows)" if w.rows else ""
        lines = [
            f"{w.name} version {w.version}{held}: window {span}"
            + (f", since {_when(w.since)}" if w.since else ""),
            f"  {w.requests:,} requests recorded ({w.read:,} read), {w.rows:,} rows answered, {w.sampled_rows:,} "
            f"rows sampled, {w.dropped:,} records dropped, {labelled:,} rows labelled{share}",
        ]
        if not self.enough:
            lines.append(
                f"  not enough to say anything about drift: {w.sampled_rows} sampled rows, {self.min_rows} needed "
                "(raise EVIDENCE_SAMPLE, or wait)"
            )
        n_tests = len(self.inputs) + len(self.outputs)
        alpha = drift.ALPHA / max(1, n_tests)
        lines.append(
            f"  drifted: {len(self.drifted_inputs)} of {len(self.inputs)} input features, "
            f"{sum(d.drifted for d in self.outputs)} of {len(self.outputs)} output features "
            f"(tests as Evidently picks them; p-values against {drift.ALPHA} / {n_tests} = {alpha:.2g})"
        )
        if self.reference_made_now:
            lines.append(
                "  (this version was logged before references were kept: made from its held-out rows now)"
            )
        return lines

    def table(self) -> str:
        shown = sorted(self.inputs, key=lambda d: -d.strength)[:SHOWN] + self.outputs
        header = ("feature", "test", "statistic", "p-value", "outside range", "drifted")
        rows = [
            (
                d.feature,
                d.test,
                f"{d.statistic:.3g}",
                "-" if d.p_value is None else f"{d.p_value:.2g}",
                "-" if d.outside is None else f"{d.outside:.1%}",
                "yes" if d.drifted else "no",
            )
            for d in shown
        ]
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            (
                "  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
            ).rstrip()
            for row in [header, *rows]
        ]
        hidden = len(self.inputs) - min(SHOWN, len(self.inputs))
        if hidden:
            lines.append(f"  ... and {hidden} input features less drifted (all in the HTML report)")
        return "\n".join(lines)

    def score_lines(self) -> list[str]:
        w = self.window
        if not w.labelled:
            return ["  no labels yet: POST /feedback with request ids and true labels gives live scores"]
        lines = [f"  {score.output}: {score.describe()}" for score in self.scores]
        delay = window.median([row.delay_s for row in w.labelled])
        if delay is not None:
            lines.append(f"  labels came {delay:.1f} s after the answer (median)")
        if w.unmatched_labels:
            lines.append(f"  {w.unmatched_labels} labels name rows no record of this window answered")
        return lines


def monitor(
    client: MlflowClient,
    database: Database,
    name: str,
    alias: str,
    version: str | None = None,
    since: dt.datetime | None = None,
    min_rows: int = MIN_ROWS,
) -> Report:
    holder = read_registry.holder(client, name, alias)
    if version is None:
        if holder is None:
            raise PipelineError(f"model {name!r} has no @{alias}: name a version with --version")
        chosen = holder
    else:
        from pipeline.registry import version as registered

        chosen = registered(client, name, version)
    contract = read_registry.contract_at(client, str(chosen.source))
    reference, made_now = _reference(client, chosen, contract)
    found = window.read(database, contract, name, str(chosen.version), since)
    vocabularies = references.vocabularies(reference)
    live_inputs = references.input_features(contract, found.inputs, vocabularies) if found.inputs else {}
    live_outputs = references.output_features(contract, found.outputs) if found.outputs else {}
    n_tests = len(reference["inputs"]) + len(reference["outputs"])
    inputs = [
        drift.test(feature, described, live_inputs[feature], n_tests)
        for feature, described in reference["inputs"].items()
        if feature in live_inputs
    ]
    outputs = [
        drift.test(feature, described, live_outputs[feature], n_tests)
        for feature, described in reference["outputs"].items()
        if feature in live_outputs
    ]
    held = holder is not None and str(holder.version) == str(chosen.version)
    return Report(
        found,
        contract,
        alias if held else None,
        reference,
        made_now,
        inputs,
        outputs,
        live.scores(contract, found.labelled),
        min_rows,
        str(chosen.run_id),
    )


def _reference(
    client: MlflowClient, chosen: ModelVersion, contract: ModelContract
) -> tuple[dict[str, Any], bool]:
    """The reference logged with the version, or (a version logged before they were) one made from its run's
    held-out rows."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = read_registry.download_model(client, str(chosen.source), Path(tmp), path=references.FILE)
            loaded: dict[str, Any] | None = references.read(path)
        except Exception:  # MLflow raises several kinds for a missing artifact
            loaded = None
        if loaded is not None:
            return loaded, False
        try:
            rows = held_out(client, str(chosen.run_id), tmp).named(contract)
        except NoHeldOutRows as exc:
            raise PipelineError(f"version {chosen.version} has no reference and {exc}") from None
    summaries = {o.name: references.summary(o, rows.outputs[o.name]) for o in contract.outputs}
    return references.make(contract, rows.x, summaries), True


def parse_since(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """`--since`: a duration back from now (`30m`, `2h`, `7d`, `1h30m`) or an ISO time (UTC unless it says)."""
    if not text:
        return None
    now = now or dt.datetime.now(dt.UTC)
    parts = _DURATION.findall(text.strip())
    if parts and "".join(f"{n}{u}" for n, u in parts) == re.sub(r"\s+", "", text):
        return now - dt.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise PipelineError(
            f"--since {text[:40]!r}: a duration back from now (30m, 2h, 7d) or an ISO time (2026-12-01T08:00)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _when(stamp: dt.datetime | None) -> str:
    return "-" if stamp is None else stamp.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
