"""Each BentoML worker listens on a socket of its own (SO_REUSEPORT) in place of the shared one: real sockets on
127.0.0.1, the shared socket playing the supervisor's, each worker's fd a copy of it as BentoML passes it."""

from __future__ import annotations

import os
import socket

from service.serving.own_socket import listen_on_own_socket

POOL = 32


def accepted(listener: socket.socket) -> int:
    """Connections waiting in `listener`'s queue (accepted and closed)."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def test_workers_listen_on_their_own_sockets_and_the_kernel_spreads_connections_over_them() -> None:
    supervisor = socket.socket()
    supervisor.bind(("127.0.0.1", 0))
    supervisor.listen(POOL)
    address = supervisor.getsockname()
    fds = [os.dup(supervisor.fileno()) for _ in range(3)]  # two workers, then one of them restarted
    workers: list[socket.socket] = []
    clients: list[socket.socket] = []
    try:
        assert listen_on_own_socket(["--fd", str(fds[0]), "--backlog", str(POOL)])
        # The shared socket no longer listens: it would hand its share to whichever worker is awake.
        assert supervisor.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        assert listen_on_own_socket(["--fd", str(fds[1]), "--backlog", str(POOL)])
        workers = [socket.socket(fileno=fd) for fd in fds[:2]]
        inodes = {os.fstat(fd).st_ino for fd in [supervisor.fileno(), *fds[:2]]}
        assert len(inodes) == 3  # the supervisor's socket and one of each worker's own
        for worker in workers:
            assert worker.getsockname() == address
            assert worker.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1

        clients = [socket.create_connection(address, timeout=5) for _ in range(POOL)]  # a pool opened at once
        counts = [accepted(worker) for worker in workers]
        assert sum(counts) == POOL and min(counts) > 0, counts  # all 32 on one: 2 in 2**32

        # A restarted worker gets the shared socket's fd again, no longer listening: it still takes its own.
        assert listen_on_own_socket(["--fd", str(fds[2]), "--backlog", str(POOL)])
        restarted = socket.socket(fileno=fds[2])
        workers.append(restarted)
        assert restarted.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        for sock in [*clients, *workers, supervisor]:
            sock.close()
        for fd in fds[len(workers) :]:
            os.close(fd)


def test_outside_a_bentoml_worker_nothing_is_replaced() -> None:
    assert listen_on_own_socket(["--service-name", "nbship"]) is False
