"""The monitor's report as one HTML file (pictures inline, nothing fetched): the summary, live scores, a picture
of each drifted feature's served values against its held-out values (the most drifted first, up to PICTURES;
when none drifted, the closest to it), and every feature's test."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.evidence import drift
from pipeline.evidence.monitor import Report
from pipeline.plots import pyplot
from service.models import reference as references

PICTURES = 12


def write(report: Report, path: Path) -> Path:
    w = report.window
    live_inputs = (
        references.input_features(report.contract, w.inputs, references.vocabularies(report.reference))
        if w.inputs
        else {}
    )
    live_outputs = references.output_features(report.contract, w.outputs) if w.outputs else {}
    ranked = sorted(report.inputs + report.outputs, key=lambda d: -d.strength)
    pictured = [d for d in ranked if d.drifted][:PICTURES] or ranked[:3]
    described = {**report.reference["inputs"], **report.reference["outputs"]}
    values = {**live_inputs, **live_outputs}
    figures = "\n".join(
        f"<figure><img alt='{html.escape(d.feature)}' src='data:image/png;base64,{_picture(d, described[d.feature], values[d.feature])}'>"
        f"<figcaption>{html.escape(d.feature)}: {drift.TESTS[d.test]} {d.statistic:.3g}"
        f"{'' if d.p_value is None else f', p = {d.p_value:.2g}'}{' (drifted)' if d.drifted else ''}</figcaption></figure>"
        for d in pictured
    )
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in _cells(d)) + "</tr>" for d in ranked
    )
    summary = "<br>".join(html.escape(line.strip()) for line in report.summary_lines())
    scores = "<br>".join(html.escape(line.strip()) for line in report.score_lines())
    title = f"{w.name} version {w.version}: live evidence"
    path.write_text(
        f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }} figcaption {{ font-size: 0.9em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{summary}</p>
<h2>Live scores</h2><p>{scores}</p>
<h2>Served against held-out</h2>
{figures}
<h2>Every feature</h2>
<table><tr><th>feature</th><th>test</th><th>statistic</th><th>p-value</th><th>threshold</th><th>outside held-out range</th><th>drifted</th></tr>
{rows}
</table>
</body></html>
""",
        encoding="utf-8",
    )
    return path


def _cells(d: drift.Drift) -> list[str]:
    return [
        d.feature,
        drift.TESTS[d.test],
        f"{d.statistic:.3g}",
        "-" if d.p_value is None else f"{d.p_value:.2g}",
        f"{d.threshold:.2g}",
        "-" if d.outside is None else f"{d.outside:.1%}",
        "yes" if d.drifted else "no",
    ]


def _picture(d: drift.Drift, described: dict, live: np.ndarray) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    if described["kind"] == "number":
        held = np.asarray(described["sample"], dtype=np.float64)
        served = np.asarray(live, dtype=np.float64)
        low, high = (
            min(held.min(), served.min(initial=held.min())),
            max(held.max(), served.max(initial=held.max())),
        )
        bins = np.linspace(low, high if high > low else low + 1, 21)
        ax.hist(held, bins=bins, density=True, alpha=0.55, label="held-out")
        ax.hist(served, bins=bins, density=True, alpha=0.55, label="served")
    else:
        counts = described["counts"]
        served_counts = Counter(references.category(v) for v in live)
        keys = list(dict.fromkeys([*counts, *served_counts]))[:20]
        x = np.arange(len(keys))
        held_total, served_total = sum(counts.values()) or 1, sum(served_counts.values()) or 1
        ax.bar(x - 0.2, [counts.get(k, 0) / held_total for k in keys], 0.4, label="held-out")
        ax.bar(x + 0.2, [served_counts.get(k, 0) / served_total for k in keys], 0.4, label="served")
        ax.set_xticks(x, keys, rotation=45, fontsize=7)
    ax.set_title(d.feature, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
