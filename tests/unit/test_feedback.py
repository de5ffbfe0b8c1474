"""`POST /feedback` (service/evidence/feedback.py) before it reaches the store, and `X-Request-ID`
(service/http/request_ids.py): a label is checked against the served contract's every form, and every refusal
is a short 4xx in the one error shape, with nothing stored."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from support.models import FORMS

from service.evidence import feedback
from service.http.request_ids import RequestIds, request_id
from service.settings import EvidenceSettings

UNREACHABLE = "mongodb://127.0.0.1:9"  # nothing listens: a request that reached the store would fail with 503


@pytest.mark.parametrize(
    ("form", "label", "stored"),
    [
        ("digits", 3, 3),
        ("wine", "class_2", 2),
        ("wine", 0, 0),
        ("text", 1, 1),  # one sigmoid: classes 0 and 1
        ("halves", [3, 0, 3], [0, 3]),  # multi-label: a set of classes
        ("one-feature", 2.5, 2.5),
        ("counts", 7, 7.0),  # a scalar regression
        ("ids", [1.0, -2], [1.0, -2.0]),  # a regression of two values
    ],
)
def test_a_label_is_stored_as_the_output_answers_it(form: str, label, stored) -> None:
    output = FORMS[form].output
    assert feedback.stored_label(output, label) == stored


@pytest.mark.parametrize(
    ("form", "label", "message"),
    [
        ("digits", 10, "a class index in [0, 9] or a class name"),
        ("digits", -1, "a class index in [0, 9]"),
        ("digits", "7", "no class '7' (no names)"),
        ("wine", "class_9", "no class 'class_9' (one of class_0, class_1, class_2)"),
        ("digits", [1, 2], "one class, an index or a name"),
        ("halves", 1, "a list of the classes that are on"),
        ("halves", [4], "a class index in [0, 3]"),
        ("ids", 1.0, "2 number(s) for output 'y'"),
        ("one-feature", "high", "1 number(s) for output 'y'"),
        ("one-feature", float("nan"), "1 number(s)"),
    ],
)
def test_a_label_the_output_cannot_answer_is_refused_by_name(form: str, label, message: str) -> None:
    with pytest.raises(
        feedback.BadLabel, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        feedback.stored_label(FORMS[form].output, label)


def client_for(form: str, **settings) -> TestClient:
    app = feedback.feedback_app(
        EvidenceSettings(_env_file=None, mongo_url=UNREACHABLE, mongo_timeout_ms=200, **settings)
    )
    feedback.serve(app, lambda: FORMS[form])
    return TestClient(app)


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        (b"{not json", 400, ["body"]),
        (b'{"labels": []}', 422, ["body", "labels"]),
        (b'{"labels": [{"label": 1}]}', 422, ["body", "labels", 0, "id"]),
        (b'{"labels": [{"id": "a b", "label": 1}]}', 422, ["body", "labels", 0, "id"]),
        (b'{"labels": [{"id": "a", "label": 1, "extra": 0}]}', 422, ["body", "labels", 0, "extra"]),
        (b'{"labels": [{"id": "a", "row": -1, "label": 1}]}', 422, ["body", "labels", 0, "row"]),
        (
            b'{"labels": [{"id": "a", "label": 1}, {"id": "b", "label": 11}]}',
            422,
            ["body", "labels", 1, "label"],
        ),
        (b'{"labels": [{"id": "a", "output": "nope", "label": 1}]}', 422, ["body", "labels", 0, "output"]),
    ],
)
def test_bad_feedback_is_a_short_4xx_that_stores_nothing(body: bytes, status: int, loc: list) -> None:
    with client_for("digits") as client:
        answer = client.post("/", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.json()["errors"][0]["loc"] == loc
    assert len(answer.content) < 2000


def test_a_model_of_several_outputs_needs_the_output_named_and_too_many_labels_are_refused() -> None:
    with client_for("notes", max_labels=2) as client:
        unnamed = client.post("/", json={"labels": [{"id": "a", "label": 1}]})
        assert (
            unnamed.status_code == 422
            and "name the output, one of 'cultivar', 'alcohol'" in unnamed.json()["detail"]
        )
        many = client.post(
            "/", json={"labels": [{"id": str(i), "output": "alcohol", "label": 1.0} for i in range(3)]}
        )
        assert many.status_code == 422 and "at most 2 labels a request" in many.json()["detail"]
        # Valid labels reach the store: here an unreachable one, a 503 that says to send them again.
        down = client.post("/", json={"labels": [{"id": "a", "output": "cultivar", "label": "b"}]})
        assert down.status_code == 503 and "send the labels again" in down.json()["detail"]


def test_every_answer_carries_its_request_id_the_client_s_or_a_new_one() -> None:
    app = FastAPI()

    @app.get("/echo")
    def echo() -> PlainTextResponse:
        return PlainTextResponse(request_id())

    client = TestClient(RequestIds(app))
    mine = client.get("/echo", headers={"X-Request-ID": "trace-01:ab.c_d"})
    assert mine.headers["x-request-id"] == mine.text == "trace-01:ab.c_d"
    made = [client.get("/echo") for _ in range(2)]
    assert made[0].text == made[0].headers["x-request-id"] != made[1].headers["x-request-id"]
    assert len(made[0].text) == 32
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.headers["x-request-id"]
    for bad in ("", "x" * 129, "a b", "é"):
        refused = client.get("/echo", headers={"X-Request-ID": bad.encode("utf-8")})
        assert refused.status_code == 400 and refused.json()["errors"][0]["loc"] == ["header", "X-Request-ID"]
        assert refused.headers["x-request-id"] != bad
