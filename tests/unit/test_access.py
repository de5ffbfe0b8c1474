"""The outer app's middlewares around a small ASGI app: API keys (and `API_KEYS` parsing), the body limit and
JSON error answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect
from support.errors import one_error

from service.http.access import LimitBody, RequireKey, caller, document_security
from service.http.error_rewrite import JsonErrors
from service.settings import ServiceSettings, parse_api_keys

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

KEY_A = "a" * 31 + "A"
KEY_B = "Zb9_-.~+/=" * 4


def test_keys_parse_into_names_and_secrets() -> None:
    keys = parse_api_keys(f" alice:{KEY_A} , ci-bot.2:{KEY_B}")
    assert [(k.name, k.key.get_secret_value()) for k in keys] == [("alice", KEY_A), ("ci-bot.2", KEY_B)]
    assert KEY_A not in repr(keys) and KEY_A not in str(keys)
    assert parse_api_keys("") == parse_api_keys("  ") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"alice:{KEY_A},", "entry 2 is empty"),
        (f"alice:{KEY_A},,bob:{KEY_B}", "entry 2 is empty"),
        (KEY_A, "entry 1 is not NAME:KEY"),
        (f":{KEY_A}", "entry 1: the name must be"),
        (f"al ice:{KEY_A}", "entry 1: the name must be"),
        ("alice:short", "entry 1 (alice): the key must be at least 32 characters"),
        (f"alice:{KEY_A[:-1]} ", "at least 32 characters"),
        (f"alice:{KEY_A[:-1]}é", "at least 32 characters"),
        (f"alice:{KEY_A},alice:{KEY_B}", "entry 2: the name 'alice' is already used"),
        (f"alice:{KEY_A},bob:{KEY_A}", "entry 2 (bob): same key as 'alice'"),
    ],
)
def test_bad_keys_are_refused_at_start_without_showing_a_key(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        ServiceSettings(_env_file=None, api_keys=text)  # type: ignore[call-arg]
    assert message in str(raised.value)
    shown = str(raised.value)
    assert KEY_A not in shown and KEY_B not in shown and "short" not in shown


def test_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", f"alice:{KEY_A}")
    settings = ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    assert [k.name for k in settings.api_keys] == ["alice"]
    assert KEY_A not in repr(settings)
    monkeypatch.delenv("API_KEYS")
    assert ServiceSettings(_env_file=None).api_keys == ()  # type: ignore[call-arg]


async def whoami(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"caller": caller(request.scope), "bytes": len(body)})


def client(*middleware: Middleware) -> TestClient:
    routes = [
        Route(path, whoami, methods=["GET", "POST"]) for path in ("/predict", "/jobs/{rest:path}", "/livez")
    ]
    return TestClient(Starlette(routes=routes, middleware=list(middleware)))


@pytest.fixture
def guarded() -> TestClient:
    return client(Middleware(RequireKey, keys=parse_api_keys(f"alice:{KEY_A},bob:{KEY_B}")))


def test_a_key_names_its_caller(guarded: TestClient) -> None:
    for key, name in ((KEY_A, "alice"), (KEY_B, "bob")):
        answer = guarded.post("/predict", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and answer.json()["caller"] == name
    assert guarded.get("/jobs/x", headers={"authorization": f"bearer  {KEY_A}"}).json()["caller"] == "alice"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing API key: send `Authorization: Bearer <key>`"),
        ({"Authorization": KEY_A}, "missing API key: send `Authorization: Bearer <key>`"),
        ({"Authorization": f"Basic {KEY_A}"}, "missing API key: send `Authorization: Bearer <key>`"),
        ({"Authorization": "Bearer "}, "missing API key: send `Authorization: Bearer <key>`"),
        ({"Authorization": f"Bearer {KEY_A}x"}, "invalid API key"),
        ({"Authorization": f"Bearer {KEY_A[:-1]}"}, "invalid API key"),
        ({"Authorization": "Bearer alice"}, "invalid API key"),
    ],
)
def test_without_a_valid_key_guarded_routes_are_401_json(
    guarded: TestClient, headers: dict[str, str], detail: str
) -> None:
    for path in ("/predict", "/jobs/", "/jobs/abc", "/no-such-route"):
        answer = guarded.post(path, headers=headers, content=b"{}")
        assert answer.status_code == 401, path
        assert answer.json() == one_error(detail, ["header", "Authorization"], "unauthorized")
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert KEY_A not in answer.text


def test_health_metrics_and_the_document_stay_open(guarded: TestClient) -> None:
    assert guarded.get("/livez").json() == {"caller": "", "bytes": 0}


def test_the_document_gets_the_bearer_scheme_on_guarded_routes_only() -> None:
    operation = {"responses": {"200": {"description": "ok"}}}
    document = {
        "paths": {
            path: {"post": json.loads(json.dumps(operation))} for path in ("/predict", "/jobs/", "/livez")
        },
        "components": {"schemas": {}},
    }
    documented = document_security(document)
    assert documented["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from the service's API_KEYS setting.",
    }
    for path in ("/predict", "/jobs/"):
        assert documented["paths"][path]["post"]["security"] == [{"bearer": []}]
        assert "401" in documented["paths"][path]["post"]["responses"]
    assert "security" not in documented["paths"]["/livez"]["post"]


LIMIT = 1000


@pytest.fixture
def limited() -> TestClient:
    return client(Middleware(LimitBody, max_bytes=LIMIT))


def chunks(total: int, size: int = 100) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def test_bodies_up_to_the_limit_pass_whole(limited: TestClient) -> None:
    assert limited.post("/predict", content=b"x" * LIMIT).json()["bytes"] == LIMIT
    streamed = limited.post("/predict", content=chunks(LIMIT))  # no Content-Length: chunked
    assert streamed.status_code == 200 and streamed.json()["bytes"] == LIMIT
    assert limited.get("/livez").json()["bytes"] == 0


def test_a_larger_body_is_413_json_by_content_length_or_by_count(limited: TestClient) -> None:
    by_length = limited.post("/predict", content=b"x" * (LIMIT + 1))
    streamed = limited.post("/jobs/", content=chunks(LIMIT + 1))
    for answer in (by_length, streamed):
        assert answer.status_code == 413
        assert answer.json() == one_error(
            f"request body too large: at most {LIMIT} bytes", ["body"], "too_large"
        )


def test_an_oversized_chunked_body_is_not_read_past_the_limit() -> None:
    read: list[int] = []

    async def endless() -> dict[str, object]:
        read.append(100)
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the app must not be called")

    scope = {"type": "http", "headers": [(b"transfer-encoding", b"chunked")], "path": "/predict"}
    asyncio.run(LimitBody(app, max_bytes=LIMIT)(scope, endless, send))  # type: ignore[arg-type]
    assert sum(read) == LIMIT + 100 and sent[0]["status"] == 413


def test_plain_text_errors_become_json_and_the_rest_passes_untouched() -> None:
    app = client(Middleware(JsonErrors))
    assert app.get("/no-such-route").json() == one_error("Not Found", ["path"], "not_found")
    assert app.delete("/predict").json() == one_error("Method Not Allowed", ["method"], "method_not_allowed")
    assert app.delete("/predict").headers["content-type"] == "application/json"
    assert app.post("/predict", content=b"xy").json() == {"caller": "", "bytes": 2}


@pytest.mark.parametrize(
    ("answer", "status", "expected"),
    [
        (
            {
                "error": "1 validation error",
                "detail": [{"type": "value_error", "msg": "65 rows", "input": "x" * 999}],
            },
            422,
            {"detail": "65 rows", "errors": [{"loc": ["body"], "msg": "65 rows", "type": "value_error"}]},
        ),
        (
            {
                "error": "2 validation errors",
                "detail": [{"type": "json_invalid"}, {"type": "missing", "loc": ["a"]}],
            },
            422,
            {
                "detail": "json_invalid; a: missing",
                "errors": [
                    {"loc": ["body"], "msg": "json_invalid", "type": "json_invalid"},
                    {"loc": ["body", "a"], "msg": "missing", "type": "missing"},
                ],
            },
        ),
        (
            {"error": "1 validation error", "detail": [{"type": "json_invalid", "msg": "Invalid JSON"}]},
            400,
            one_error("the body is not valid JSON", ["body"], "invalid_json"),
        ),
        ({"error": "task_id is required"}, 400, one_error("task_id is required", ["body"], "invalid_json")),
    ],
)
def test_every_error_gets_one_shape_validation_422_and_bodies_that_are_not_json_400(
    answer: dict[str, object], status: int, expected: dict[str, object]
) -> None:
    async def bentoml_answer(request: Request) -> JSONResponse:
        return JSONResponse(answer, status_code=400)

    app = TestClient(
        Starlette(
            routes=[Route("/predict", bentoml_answer, methods=["POST"])], middleware=[Middleware(JsonErrors)]
        )
    )
    response = app.post("/predict", content=b"{}")
    assert (response.status_code, response.json()) == (status, expected)


def test_a_websocket_without_a_key_is_closed() -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(caller(websocket.scope))
        await websocket.close()

    app = Starlette(
        routes=[WebSocketRoute("/ws", echo)],
        middleware=[Middleware(RequireKey, keys=parse_api_keys(f"alice:{KEY_A}"))],
    )
    with pytest.raises(WebSocketDisconnect) as closed, TestClient(app).websocket_connect("/ws"):
        pass
    assert closed.value.code == 1008
    with TestClient(app).websocket_connect("/ws", headers={"Authorization": f"Bearer {KEY_A}"}) as socket:
        assert socket.receive_text() == "alice"
