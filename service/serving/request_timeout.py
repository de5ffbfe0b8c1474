"""The request timeout (`TIMEOUT_S`, BentoML's `traffic.timeout`): a request whose answer has not begun within it
gets a 504 in the one error shape, and its handler is cancelled.

It takes the place of BentoML's own TimeoutMiddleware (`use_in_bentoml`, before the service's app is built),
which keeps each request's timer until it fires: tens of thousands of live timers a loaded worker, which made
every full garbage collection walk them (docs/benchmarks/serve.md, "a full garbage collection every few
seconds"). Here the timer is cancelled as soon as the answer begins or the handler ends; a handler that fails
before answering ends the wait at once, instead of at the timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.error_shape import send_error


class RequestTimeout:
    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        begun: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(self.timeout, _expire, begun)

        async def send_begun(message: Message) -> None:
            if not begun.done():
                begun.set_result(None)
            elif begun.exception() is not None:
                return  # timed out: the 504 is the answer, whatever the cancelled handler sends
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, send_begun))
        handler.add_done_callback(lambda _: _begin(begun))  # ended (or failed) without answering
        try:
            await begun
        except TimeoutError:
            if handler.cancel():
                await send_error(send, 504, f"no answer within {self.timeout:g} s")
                return
        except asyncio.CancelledError:  # the client went away: so does the handler
            handler.cancel()
            raise
        finally:
            timer.cancel()
        await handler


def _expire(begun: asyncio.Future[Any]) -> None:
    if not begun.done():
        begun.set_exception(TimeoutError())


def _begin(begun: asyncio.Future[Any]) -> None:
    if not begun.done():
        begun.set_result(None)


def use_in_bentoml() -> None:
    """Make BentoML build its apps with this timeout middleware: its app factory imports the class by name from
    its traffic module each time it builds the middleware list."""
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc,assignment]
