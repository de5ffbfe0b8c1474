"""Schemathesis against the service's own OpenAPI document, on the service served for real (`bentoml serve`
with API keys, the packaged champion, nx-27017 and RabbitMQ): every operation the document lists, with valid
and invalid inputs, with a key and without one.

No answer may be a 5xx, and every 4xx must be JSON with a message (`json_error_with_a_message`). Each operation
is a Hypothesis test over schemathesis's strategies for it (`APIOperation.as_strategy`); schemathesis's pytest
plugin cannot load a schema from a fixture under pytest 9. Not in the default test run: `--fuzz` selects it, as
`./noxw -s fuzz` does (FUZZ_EXAMPLES=50 for a quick try).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import KeyedService

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "500"))
# `schemathesis run --checks all`: its examples an operation, in each of its phases (CI: FUZZ_CLI_EXAMPLES, .ci/run).
CLI_EXAMPLES = int(os.environ.get("FUZZ_CLI_EXAMPLES", "100"))
fuzzed = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=list(HealthCheck),
    database=None,
)


@schemathesis.check
def json_error_with_a_message(ctx: Any, response: Any, case: Any) -> None:
    """A 4xx answer is JSON with `detail`: a message, or a list of errors each with its `msg`."""
    if not 400 <= response.status_code < 500:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} is not JSON: {response.content[:200]!r}") from None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        return
    if isinstance(detail, list) and detail and all(isinstance(e, dict) and e.get("msg") for e in detail):
        return
    raise AssertionError(f"{response.status_code} without a message: {body!r:.200}")


CHECKS = [not_a_server_error, json_error_with_a_message]

# Rows of the model's width (the digits model's 64), which the document cannot state (the width is read from the
# model after the service is defined): without them, generated rows almost never reach the model or the store.
ROW_WIDTH = 64
PIXELS = st.integers(0, 16) | st.floats(0, 16)  # what the model was trained on
NUMBERS = st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN
ROWS = st.one_of(
    st.lists(st.lists(values, min_size=ROW_WIDTH, max_size=ROW_WIDTH), min_size=1, max_size=80)
    for values in (PIXELS, NUMBERS)
)  # up to 80 rows: over MAX_ROWS (64)
TAKES_ROWS = ("POST /predict", "POST /jobs/")


@pytest.fixture(scope="module")
def schema(keyed_service: KeyedService) -> Any:
    loaded = schemathesis.openapi.from_url(f"{keyed_service.url}/docs.json", timeout=30)
    loaded.config.update(base_url=keyed_service.url, request_timeout=30)
    return loaded


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """Keep-alive: one connection for the whole run."""
    with requests.Session() as session:
        yield session


def fuzz(schema: Any, session: requests.Session, headers: dict[str, str]) -> dict[str, Counter[int]]:
    """Every operation, valid and invalid inputs; returns the answers' status codes per operation, or fails with
    each operation's first failure."""
    answers: dict[str, Counter[int]] = defaultdict(Counter)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        cases = st.one_of(*cases_for(operation, headers))

        @fuzzed
        @given(case=cases)
        def run(case: Any) -> None:
            response = case.call_and_validate(session=session, checks=CHECKS)
            answers[case.operation.label][response.status_code] += 1

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # every operation runs; failures are reported together
            failures.append(f"{operation.label}:\n{exc}")
    for label, statuses in answers.items():
        print(f"{label}: {sum(statuses.values())} requests, status codes {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(failures)
    return answers


def cases_for(operation: Any, headers: dict[str, str]) -> list[st.SearchStrategy[Any]]:
    """Schemathesis's valid and invalid cases (with `headers`), and well-formed rows where the body takes rows."""
    cases = [operation.as_strategy(mode, headers=headers) for mode in GenerationMode]
    if operation.label in TAKES_ROWS:
        json_body = {"media_type": "application/json", "headers": headers}
        cases.append(ROWS.map(lambda rows: operation.Case(body={"instances": rows}, **json_body)))
    return cases


def test_with_a_key(schema: Any, session: requests.Session, keyed_service: KeyedService) -> None:
    answers = fuzz(schema, session, keyed_service.auth("alice"))
    for label in ("POST /predict", "POST /jobs/", "GET /jobs/{job_id}"):
        assert answers[label].total() >= EXAMPLES and answers[label][401] == 0, (label, answers[label])


def test_without_a_key(schema: Any, session: requests.Session) -> None:
    answers = fuzz(schema, session, {})
    for label in ("POST /predict", "POST /jobs/", "GET /jobs/{job_id}", "GET /model"):
        assert set(answers[label]) <= {401, 404, 405, 413}, (label, answers[label])  # never served


def test_schemathesis_with_all_its_checks_finds_the_document_and_the_service_agree(
    keyed_service: KeyedService, tmp_path
) -> None:
    """`schemathesis run --checks all` (FUZZ_CLI_EXAMPLES, 100, examples an operation, its default phases: examples, coverage,
    fuzzing, stateful), as a person would run it against the served document: every status documented, every
    answer in its documented schema, schema-valid requests accepted and invalid ones refused, auth enforced."""
    import subprocess
    import sys
    from pathlib import Path

    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{keyed_service.url}/docs.json",
        "--checks", "all", "--max-examples", str(CLI_EXAMPLES), "--workers", "1", "--no-color",
        "--header", f"Authorization: {keyed_service.auth('alice')['Authorization']}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-8000:]
