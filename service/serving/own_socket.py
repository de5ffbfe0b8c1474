"""Each BentoML worker listens on a socket of its own (SO_REUSEPORT), so that the kernel spreads new connections
over the workers.

BentoML's workers share one listening socket (its supervisor opens it and passes the fd with `--fd N`), and the
worker whose event loop is awake when a client opens its keep-alive pool accepts all of it: one worker then
serves every connection while the other idles (docs/benchmarks/serve.md, "one socket a worker"). With a socket
of its own per worker on the same address, the kernel hashes each connection to a listening socket, whichever
worker is awake (nginx's `reuseport`, gunicorn's `--reuse-port`).
"""

from __future__ import annotations

import argparse
import contextlib
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
        # restarted worker) it is no longer listening: OSError. It stays open in the supervisor, keeping the port.
        with contextlib.suppress(OSError):
            shared.shutdown(socket.SHUT_RD)
        os.dup2(own.fileno(), args.fd)  # the worker's server is built on fd N
        own.close()
    finally:
        shared.close()
    return True
