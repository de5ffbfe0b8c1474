"""Three fixes of per-process serving costs, applied in each worker before it serves (found by profiling and
counting connections per worker under load; see docs/benchmarks/serve.md).

`listen_on_own_socket`: spread new connections over the workers. BentoML's workers share one listening socket
(circus opens it and passes its fd), and whichever worker's event loop is awake when a client opens its
keep-alive pool (a gateway, a load generator opening 64 connections in a millisecond) accepts all of it: with 2
workers and 64 connections, one worker held every connection in about half of the rounds measured, halving
throughput (accepting one connection per wake-up did not help: the other worker was busy or not scheduled
during the burst; uvloop accepts until the queue is empty). Each worker now listens on a socket of its own on
the same address with SO_REUSEPORT, so the kernel spreads connections over the workers as they arrive, by a
hash of the client's address and port, whichever worker is awake (nginx's `reuseport`, gunicorn's
`--reuse-port`). The shared socket stops listening (a connection in its queue at that moment is refused, so
only while the first worker starts), but stays open in BentoML's supervisor and keeps the port bound.

`bind_api_methods`: BentoML's `@bentoml.api` methods are non-data descriptors that build a new wrapper
(`inspect.signature`, `functools.wraps`) on every attribute access, and the server reads the method once per
request, twice for a batchable one: about 0.2 ms of CPU per /predict request, 13% of it. Binding each once on
the instance gives the server the same callable every time.

`freeze_loaded_objects`: a worker that has loaded TensorFlow, Keras, MLflow and the model holds about 555,000
objects that live as long as it does, and every full collection of Python's garbage collector walked all of them
(270-400 ms each, a stall of every request in flight, several a minute under load). Frozen once the worker is
ready, they are left out of every later collection (`gc.freeze`, as Instagram's forked workers do).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import sys


def listen_on_own_socket(argv: list[str] | None = None) -> bool:
    """In a BentoML worker (`--fd N` in its arguments), put a listening socket of this process's own, bound to
    the shared socket's address with SO_REUSEPORT, in place of fd N, before the worker starts serving on it.
    Returns False where there is no shared socket to replace (the class built outside a BentoML worker)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--fd", type=int)
    parser.add_argument("--backlog", type=int, default=2048)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.fd is None:
        return False
    shared = socket.socket(fileno=os.dup(args.fd))
    try:
        # Every socket bound to a port with SO_REUSEPORT must have it: set it on the shared one too (idempotent).
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own = socket.socket(shared.family, socket.SOCK_STREAM)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own.bind(shared.getsockname())
        own.listen(args.backlog)
        # Out of the kernel's choice: a listening socket left in the group would get a share of the connections
        # and hand them to whichever worker is awake again. The first worker does it; for the others (and a
        # restarted worker) it is no longer listening: OSError.
        with contextlib.suppress(OSError):
            shared.shutdown(socket.SHUT_RD)
        os.dup2(own.fileno(), args.fd)  # the worker's server is built on fd N
        own.close()
    finally:
        shared.close()
    return True


def bind_api_methods(instance: object) -> None:
    """Store each API method of `instance`'s class, bound once, on the instance (shadows the descriptor)."""
    from _bentoml_sdk.method import APIMethod

    owner = type(instance)
    for name, attribute in vars(owner).items():
        if isinstance(attribute, APIMethod) and name not in vars(instance):
            setattr(instance, name, attribute.__get__(instance, owner))


def freeze_loaded_objects() -> None:
    """Move every object alive now to the collector's permanent generation (young garbage collected first)."""
    gc.collect(1)
    gc.freeze()
