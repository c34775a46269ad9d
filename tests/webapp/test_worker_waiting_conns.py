"""A connection waiting on the worker's poller whose request arrives as its wait ends is served, not reset.

gthread closes a waiting connection (a new one that has not sent its request
yet, or a kept-alive one between requests) once its time is up. In a 2x burst,
one turn of the worker's loop took long enough for hundreds of clients' requests
to arrive after the poller was asked and before that close: the close, with
unread bytes, reset each connection and its client got no answer at all
(``bench/capacity.py``: ~750 "connection reset by peer" of 3,328). These tests
drive the worker's own methods on real sockets, with the loop's turn frozen
between the poll and the close.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections import deque
from functools import partial

import pytest
from gunicorn.config import Config
from gunicorn.workers.gthread import TConn

from webapp.server.worker import FlowbridgeWorker


class _Worker(FlowbridgeWorker):
    """The worker's connection bookkeeping without a process around it; requests handed on are recorded."""

    def __init__(self) -> None:  # noqa: D107 - gunicorn's __init__ wants an arbiter; none is needed here
        self.cfg = Config()
        self.poller = selectors.DefaultSelector()
        self.pending_conns: deque = deque()
        self.keepalived_conns: deque = deque()
        self.lingering: deque = deque()
        self.nr_conns = 0
        self.handed_on: list = []

    def enqueue_req(self, conn) -> None:
        self.handed_on.append(conn)


@pytest.fixture
def worker():
    w = _Worker()
    yield w
    w.poller.close()


def _waiting(worker: _Worker, kind: str) -> tuple[TConn, socket.socket]:
    """A connection waiting on the poller whose wait ended a moment ago; the client's end."""
    server, client = socket.socketpair()
    conn = TConn(worker.cfg, server, ("127.0.0.1", 1), ("127.0.0.1", 2))
    conn.timeout = time.monotonic() - 0.01
    worker.nr_conns += 1
    if kind == "pending":
        worker.pending_conns.append(conn)
        worker.poller.register(server, selectors.EVENT_READ, partial(worker.on_pending_socket_readable, conn))
    else:
        conn.initialized = True  # it served a request before
        worker.keepalived_conns.append(conn)
        worker.poller.register(server, selectors.EVENT_READ, partial(worker.on_client_socket_readable, conn))
    return conn, client


def _murder(worker: _Worker, kind: str) -> None:
    worker.murder_pending() if kind == "pending" else worker.murder_keepalived()


@pytest.mark.parametrize("kind", ["pending", "keepalive"])
def test_a_request_that_arrived_as_the_wait_ended_is_handed_on(worker, kind):
    conn, client = _waiting(worker, kind)
    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # after the loop polled, before it closes
    _murder(worker, kind)
    assert worker.handed_on == [conn]
    assert conn not in worker.pending_conns and conn not in worker.keepalived_conns
    assert conn.sock.fileno() != -1, "the connection was closed with the request unread"
    with pytest.raises(KeyError):
        worker.poller.get_key(conn.sock)  # off the poller: a thread serves it now
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(1)  # neither closed nor reset: the client waits for its answer
    conn.sock.close()
    client.close()


@pytest.mark.parametrize("kind", ["pending", "keepalive"])
def test_an_idle_connection_whose_wait_ended_is_closed_as_before(worker, kind):
    conn, client = _waiting(worker, kind)
    _murder(worker, kind)
    assert worker.handed_on == []
    assert worker.nr_conns == 0
    assert client.recv(1) == b""  # closed cleanly
    client.close()


def test_connections_still_waiting_are_left_alone(worker):
    conn, client = _waiting(worker, "pending")
    conn.timeout = time.monotonic() + 60
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    worker.murder_pending()
    assert worker.handed_on == [] and list(worker.pending_conns) == [conn]  # the poller will report it
    worker.poller.unregister(conn.sock)
    conn.sock.close()
    client.close()
