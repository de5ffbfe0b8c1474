"""Two fixes of per-process serving costs, applied in each worker before it serves (found by profiling workers
under load with py-spy; see docs/benchmarks/serve.md).

`accept_one_at_a_time`: spread new connections over the workers, each worker accepting one connection per
wake-up (nginx's default, `multi_accept off`). BentoML's workers share one listening socket and asyncio accepts
up to `backlog` (2048) queued connections each time it is readable, so when a client opens its keep-alive pool
at once (a gateway, a load generator) the worker that wakes first can take all of it and the others idle:
measured with 2 workers and 64 connections, one worker held every connection in some runs, halving
throughput. Accepting one at a time lets every worker's event loop take its turn (a busy worker comes back to
the socket later, so it takes fewer).

`bind_api_methods`: BentoML's `@bentoml.api` methods are non-data descriptors that build a new wrapper
(`inspect.signature`, `functools.wraps`) on every attribute access, and the server reads the method once per
request, twice for a batchable one: about 0.2 ms of CPU per /predict request, 13% of it. Binding each once on
the instance gives the server the same callable every time.
"""

from __future__ import annotations

import asyncio.selector_events
from typing import Any

ACCEPTS_PER_WAKE = 1
_loop_class = asyncio.selector_events.BaseSelectorEventLoop


def accept_one_at_a_time() -> None:
    """Patch the selector event loop of this process (idempotent). Call before the server starts listening."""
    original = getattr(_loop_class, "_accept_connection")  # noqa: B009 (private: mypy does not know it)
    if getattr(original, "_fair_accept", False):
        return

    def accept_few(
        self: Any,
        protocol_factory: Any,
        sock: Any,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        return original(
            self, protocol_factory, sock, sslcontext, server, min(backlog, ACCEPTS_PER_WAKE), *args, **kwargs
        )

    accept_few._fair_accept = True  # type: ignore[attr-defined]
    setattr(_loop_class, "_accept_connection", accept_few)  # noqa: B010


def bind_api_methods(instance: object) -> None:
    """Store each API method of `instance`'s class, bound once, on the instance (shadows the descriptor)."""
    from _bentoml_sdk.method import APIMethod

    owner = type(instance)
    for name, attribute in vars(owner).items():
        if isinstance(attribute, APIMethod) and name not in vars(instance):
            setattr(instance, name, attribute.__get__(instance, owner))
