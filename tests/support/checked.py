"""A version registered by a test or a benchmark without `python -m pipeline train` is checked as the pipeline
checks it (service.models.check, run here in this process rather than a fresh one) and tagged with the runtime
the check chose, so that it is served as a trained version is (its lean form, where it has one)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def runtime_tags(client: Any, run_id: str, model_uri: str) -> dict[str, str]:
    """Check the run's logged model on its held-out rows, tag the run with its runtime; the tags, for its version."""
    from pipeline import evaluation
    from service.models.check import check
    from service.models.registry import download_model

    with tempfile.TemporaryDirectory() as tmp:
        rows = evaluation.held_out_rows(client, run_id, Path(tmp))
        verdict = check(download_model(client, model_uri, Path(tmp) / "model"), rows)
    assert verdict.problem is None, verdict.problem
    tags = evaluation.runtime_tags(verdict)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    return tags
