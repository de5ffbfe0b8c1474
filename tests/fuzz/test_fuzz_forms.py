"""`schemathesis run --checks all` (every check, its default phases: examples, coverage, fuzzing, stateful) on the
OpenAPI document of a model of each request form besides the digits model's (tests/fuzz/test_fuzz_served.py):

    wine     13 named float32 features (dataframe_records, dataframe_split, instances as objects)
    notes    several inputs, a string a row among them; two outputs (a classifier and a regressor)
    columns  one input a column: an int32, a string, a float (records; no positional rows)

In process, not served: schemathesis drives the service's own ASGI app (support.in_process_fuzz), the app
`bentoml serve` runs with the same middleware and the job API, against the real job store and broker, with a
tiny untrained Keras model of the form (support.tiny_models). A served process a form would add a server start
and its worker's model load each; in process each form costs a spawned Python with TensorFlow (a BentoML
service cannot be defined twice in one process). What only a served process shows (API keys, the body limit
counted off the socket) is fuzzed on the digits model, served.

Cases per operation: FUZZ_FORM_EXAMPLES, default 50 (the CLI's default is 100: half, for CI's time; with the
document before issue 28's fix, 30 found its mismatches), FUZZ_EXAMPLES when set.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from support.in_process_fuzz import fuzz_form
from support.job_servers import delete_queues, fresh_job_settings, settings_env

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or os.environ.get("FUZZ_FORM_EXAMPLES", "50"))
FORMS = ("wine", "notes", "columns")


@pytest.fixture
def job_env(mongo_url: str, amqp_url: str) -> Iterator[dict[str, str]]:
    """A job store and queues of the form's own (no job worker: jobs stay queued)."""
    settings = fresh_job_settings(mongo_url, amqp_url)
    yield {**settings_env(settings), "TF_CPP_MIN_LOG_LEVEL": "3", "WORKERS": "1"}
    delete_queues(settings)


@pytest.mark.parametrize("form", FORMS)
def test_schemathesis_with_all_its_checks_finds_the_document_and_the_service_agree(
    form: str, job_env: dict[str, str], tmp_path: Path
) -> None:
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as process:
        failures, answers = process.submit(fuzz_form, form, tmp_path, job_env, EXAMPLES).result(timeout=1200)
    print(form, dict(sorted(answers.items())))
    assert not failures, f"{len(failures)} failing checks:\n" + "\n".join(failures[:20])
    for label in ("POST /predict 200", "POST /jobs/ 202", "POST /predict 422", "POST /jobs/ 422"):
        assert answers.get(label, 0) >= 10, (label, answers)  # valid and invalid rows both reached the check
