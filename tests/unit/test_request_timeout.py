"""The request timeout that takes the place of BentoML's: a 504 in the one error shape when no answer has begun
in time, the handler cancelled; and no timer outlives its request (BentoML's kept each one for the whole
timeout, hundreds of thousands of objects under load, which made every full garbage collection a long stall)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from support.errors import one_error

from service.serving.request_timeout import RequestTimeout

Message = dict[str, Any]
SCOPE = {"type": "http", "method": "POST", "path": "/predict", "headers": []}


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def live_timers(loop: asyncio.AbstractEventLoop) -> int:
    return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]


def test_answers_pass_and_leave_no_timer_behind() -> None:
    async def run() -> tuple[list[Message], int]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        middleware = RequestTimeout(answer, timeout=30)
        for _ in range(100):
            await middleware(SCOPE, receive, send)
        return sent, live_timers(asyncio.get_running_loop())

    sent, timers = asyncio.run(run())
    assert [m["type"] for m in sent[:2]] == ["http.response.start", "http.response.body"]
    assert len(sent) == 200 and all(m.get("status", 200) == 200 for m in sent)
    assert timers == 0


def test_no_answer_in_time_is_a_504_in_the_error_shape_and_the_handler_is_cancelled() -> None:
    cancelled: list[bool] = []

    async def hangs(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            await answer(scope, receive, send)  # what a cancelled handler still sends is dropped
            raise

    async def run() -> list[Message]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        await RequestTimeout(hangs, timeout=0.05)(SCOPE, receive, send)
        await asyncio.sleep(0.01)  # the handler's cancellation runs
        return sent

    sent = asyncio.run(run())
    assert cancelled == [True]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"]) == one_error("no answer within 0.05 s", [], "timeout")


def test_a_handler_that_fails_before_answering_fails_at_once_not_at_the_timeout() -> None:
    async def fails(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("broken handler")

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    async def run() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RuntimeError, match="broken handler"):
            await RequestTimeout(fails, timeout=30)(SCOPE, receive, send)
        return loop.time() - started

    assert asyncio.run(run()) < 5


def test_lifespan_passes_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def send(message: Message) -> None:
        return None

    asyncio.run(RequestTimeout(app, timeout=30)({"type": "lifespan"}, receive, send))
    assert seen == ["lifespan"]
