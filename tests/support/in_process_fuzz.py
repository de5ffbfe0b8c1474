"""`schemathesis run --checks all` against the service in process: its ASGI app (`to_asgi()`, the app
`bentoml serve` runs, middleware and mounted job and protocol apps included), serving a tiny model of one form
(support.tiny_models), with no server and no socket.

One form a process: a BentoML service registers its HTTP metrics in Prometheus's process-wide registry, so a
second service in the same process fails at its first request. `fuzz_form` runs in a fresh spawned process.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis import GenerationMode


def fuzz_form(
    form: str, folder: Path, env: dict[str, str], examples: int
) -> tuple[list[str], dict[str, int]]:
    """Package the form's tiny model, serve it in process with `env` (job store and broker), run schemathesis's
    engine with every check and phase, as its CLI does; returns each failing check (with its request) and the
    number of answers by operation and status ("POST /predict 200")."""
    from schemathesis.engine import Status, events, from_schema

    from support.tiny_models import package

    os.environ.update(env)
    metrics = folder / "prometheus"  # what `bentoml serve` gives its workers
    metrics.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    os.environ["MODEL_TAG"] = package(form, folder)
    from service.service import PredictionService  # defined now: reads MODEL_TAG and the model's contract

    schemathesis.hook(map_case)
    schema = schemathesis.openapi.from_asgi("/docs.json", PredictionService.to_asgi())
    schema.config.checks.update(included_check_names=["all"])
    schema.config.generation.update(max_examples=examples)
    failures: list[str] = []
    answers: Counter[str] = Counter()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            answers.update(
                f"{event.recorder.label} {interaction.response.status_code}"
                for interaction in event.recorder.interactions.values()
                if interaction.response is not None
            )
        if isinstance(event, events.ScenarioFinished) and event.status == Status.FAILURE:
            failures.extend(_failed(event.recorder))
        elif isinstance(event, events.NonFatalError):
            failures.append(f"{event.label}: {event.value!r:.500}")
        elif isinstance(event, events.FatalError):
            failures.append(f"{form}: {event.exception!r:.500}")
    return failures, dict(answers)


def _failed(recorder: Any) -> list[str]:
    failed = []
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            case = recorder.cases[case_id].value
            interaction = recorder.interactions.get(case_id)
            answer = interaction.response if interaction else None
            failed.append(
                f"{recorder.label} {check.name}: {check.failure_info.failure.title}: "
                f"{check.failure_info.failure.message[:300]}\n"
                f"  body {str(case.body)[:400]}\n"
                f"  -> {answer.status_code if answer else None} {str(answer.content if answer else '')[:300]}"
            )
    return failed


def map_case(context: Any, case: Any) -> Any:
    """A valid body of several inputs by name gets each input's rows cut to the fewest: the one rule of the
    request its document can state only in words (JSON Schema cannot relate two arrays' lengths)."""
    meta = case.meta
    by_name = case.body.get("inputs") if isinstance(case.body, dict) else None
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE or not isinstance(by_name, dict):
        return case
    counts = [len(rows) for rows in by_name.values() if isinstance(rows, list)]
    if len(counts) == len(by_name) > 1:
        case.body = {"inputs": {name: rows[: min(counts)] for name, rows in by_name.items()}}
    return case
