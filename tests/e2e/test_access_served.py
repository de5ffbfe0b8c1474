"""API keys and request limits on the served service (`bentoml serve` with API_KEYS, default limits)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from support.errors import one_error

from service.settings import DEFAULT_MAX_BODY_BYTES
from tests.conftest import KeyedService

pytestmark = pytest.mark.slow

JSON = {"content-type": "application/json"}
ROW = [0.0] * 64


@pytest.fixture(scope="module")
def client(keyed_service: KeyedService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed_service.url, timeout=60) as client:
        yield client


def test_without_or_with_a_wrong_key_guarded_routes_are_401(
    client: httpx.Client, keyed_service: KeyedService
) -> None:
    calls = [("POST", "/predict"), ("POST", "/jobs"), ("POST", "/jobs/"), ("GET", f"/jobs/{'a' * 32}")]
    calls += [("GET", "/model")]
    wrong = {"Authorization": f"Bearer {keyed_service.keys['alice']}x"}
    for method, path in calls:
        for headers, detail in (({}, "missing API key"), (wrong, "invalid API key")):
            answer = client.request(method, path, json={"instances": [ROW]}, headers=headers)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["detail"].startswith(detail)
            assert answer.headers["www-authenticate"].startswith("Bearer")


def test_with_a_key_the_service_answers(client: httpx.Client, keyed_service: KeyedService) -> None:
    alice = keyed_service.auth("alice")
    predicted = client.post("/predict", json={"instances": [ROW]}, headers=alice)
    assert predicted.status_code == 200 and len(predicted.json()["predictions"]) == 1
    assert client.get("/model", headers=alice).status_code == 200
    submitted = client.post("/jobs", json={"instances": [ROW]}, headers=alice)
    assert submitted.status_code == 202, submitted.text
    view = client.get(submitted.json()["url"], headers=alice)
    assert view.status_code == 200 and view.json()["status"] == "queued"
    unknown = client.get(f"/jobs/{'a' * 32}/more", headers=alice)  # no route: BentoML's 404, made JSON
    assert unknown.status_code == 404 and unknown.json() == one_error("Not Found", ["path"], "not_found")


def test_health_readiness_metrics_and_the_document_stay_open(client: httpx.Client) -> None:
    for path in ("/livez", "/readyz", "/metrics", "/docs.json", "/"):
        assert client.get(path).status_code == 200, path
    document = client.get("/docs.json").json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["paths"]["/predict"]["post"]["security"] == [{"bearer": []}]
    assert document["paths"]["/jobs/{job_id}"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in document["paths"]["/livez"]["get"]


def test_a_job_is_visible_only_to_the_key_that_submitted_it(
    client: httpx.Client, keyed_service: KeyedService
) -> None:
    job = client.post("/jobs", json={"instances": [ROW]}, headers=keyed_service.auth("alice")).json()
    for_bob = client.get(job["url"], headers=keyed_service.auth("bob"))
    unknown = client.get(f"/jobs/{'0' * 32}", headers=keyed_service.auth("bob"))
    assert for_bob.status_code == unknown.status_code == 404
    # the same answer as an unknown id
    assert for_bob.json() == one_error(f"no job {job['id']!r}", ["path", "job_id"], "not_found")


def test_the_same_idempotency_key_under_two_owners_is_two_jobs(
    client: httpx.Client, keyed_service: KeyedService
) -> None:
    key = {"Idempotency-Key": "order-1"}
    ids = {}
    for name, rows in (("alice", [ROW]), ("bob", [ROW, ROW])):  # other rows: no conflict across owners
        headers = keyed_service.auth(name) | key
        first = client.post("/jobs", json={"instances": rows}, headers=headers)
        again = client.post("/jobs", json={"instances": rows}, headers=headers)
        assert first.status_code == again.status_code == 202, first.text
        assert first.json()["id"] == again.json()["id"]
        ids[name] = first.json()["id"]
    assert ids["alice"] != ids["bob"]
    assert client.get(f"/jobs/{ids['bob']}", headers=keyed_service.auth("bob")).json()["n_rows"] == 2


def too_large_body() -> bytes:
    return b'{"instances": [' + b" " * DEFAULT_MAX_BODY_BYTES + b"]}"


def test_a_body_over_the_limit_is_413_by_content_length(
    client: httpx.Client, keyed_service: KeyedService
) -> None:
    for path in ("/predict", "/jobs"):
        answer = client.post(path, content=too_large_body(), headers=JSON | keyed_service.auth("alice"))
        assert answer.status_code == 413, (path, answer.text)
        assert answer.json() == one_error(
            f"request body too large: at most {DEFAULT_MAX_BODY_BYTES} bytes", ["body"], "too_large"
        )


def test_a_chunked_body_over_the_limit_is_413(client: httpx.Client, keyed_service: KeyedService) -> None:
    def chunks() -> Iterator[bytes]:
        body = too_large_body()
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    for path in ("/predict", "/jobs"):
        answer = client.post(path, content=chunks(), headers=JSON | keyed_service.auth("alice"))
        assert "content-length" not in answer.request.headers  # sent chunked
        assert answer.status_code == 413, (path, answer.text)
        assert answer.json()["detail"].startswith("request body too large")
    # A chunked body within the limit is served as usual.
    small = json.dumps({"instances": [ROW]}).encode()
    answer = client.post(
        "/predict", content=iter([small[:10], small[10:]]), headers=JSON | keyed_service.auth("bob")
    )
    assert answer.status_code == 200, answer.text


def test_the_largest_job_fits_the_body_limit_and_one_row_more_is_422(
    client: httpx.Client, keyed_service: KeyedService
) -> None:
    """10,000 rows of full-precision floats (13 MB of JSON) are accepted; 10,001 rows name the limit."""
    rows = np.random.default_rng(0).standard_normal((10_001, 64)).tolist()
    alice = JSON | keyed_service.auth("alice")
    largest = json.dumps({"instances": rows[:10_000]}).encode()
    assert len(largest) < DEFAULT_MAX_BODY_BYTES
    accepted = client.post("/jobs", content=largest, headers=alice)
    assert accepted.status_code == 202, accepted.text
    refused = client.post("/jobs", content=json.dumps({"instances": rows}).encode(), headers=alice)
    assert refused.status_code == 422
    assert "10001 rows; at most 10000 rows" in refused.json()["detail"]


def test_too_many_rows_per_request_name_the_limit(client: httpx.Client, keyed_service: KeyedService) -> None:
    answer = client.post("/predict", json={"instances": [ROW] * 65}, headers=keyed_service.auth("alice"))
    assert answer.status_code == 422
    assert "65 rows; at most 64 rows per request" in answer.json()["detail"]
