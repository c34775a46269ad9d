"""Refuse requests a worker has no thread for, from its main loop, before they wait unanswered.

The capacity guard (:mod:`webapp.guards.capacity`) sees a request only once a
request thread runs it. In a burst of more connections than a worker has
threads, the rest wait in gthread's executor queue, which has no bound: under
a 2x burst, clients waited 30 s and more for any answer at all. So the worker
counts the requests handed to its threads, and once that reaches its threads
plus an overflow (:func:`overflow_size`: a quarter of them, at least 16, room
for the quick refusals the guard answers itself), a new request is answered here, on the
worker's main loop, without a thread and without parsing more than its first
line: **503** ``overloaded`` with the guard's computed ``Retry-After`` and
``Connection: close``.

Health and status routes (:data:`webapp.guards.capacity.LIGHT_PATHS`) are never
refused here: their first line is peeked at (``MSG_PEEK``, nothing consumed) and
they go to the threads as usual, where reserved threads answer them.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from ..guards.capacity import LIGHT_PATHS, RETRY_AFTER_MAX, RETRY_AFTER_MIN

__all__ = ["estimate_retry_after", "first_line", "is_light", "overflow_size", "peek", "refuse"]



def overflow_size(threads: int) -> int:
    """Requests beyond a worker's ``threads`` that may still wait for one: a quarter of them, at least 16."""
    return max(16, threads // 4)

_PEEK = 512


def peek(sock: socket.socket) -> bytes | None:
    """What the client has sent so far, without consuming it: None when nothing yet, b"" when it closed."""
    try:
        return sock.recv(_PEEK, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""  # a broken connection is as good as closed


def first_line(data: bytes) -> bytes:
    """The request line of what :func:`peek` saw."""
    return data.lstrip(b"\r\n").split(b"\r\n", 1)[0]


def is_light(line: bytes) -> bool:
    """Whether a request line asks for a health or status route (``GET /healthz HTTP/1.1``)."""
    parts = line.split(b" ")
    if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
        return False
    path = parts[1].split(b"?", 1)[0].decode("latin-1")
    return path in LIGHT_PATHS


def refuse(sock: socket.socket, retry_after: int) -> bool:
    """Answer 503 ``overloaded`` on ``sock`` and shut its sending side; never blocks the worker's loop.

    The caller closes ``sock``, once the client closed its side or after a short linger: closing it
    while more of the request (a body sent after the headers) arrives would reset the connection,
    and the client could lose the 503 it had not read yet. False when the connection is broken (it is
    then closed here).
    """
    retry_after = max(RETRY_AFTER_MIN, min(RETRY_AFTER_MAX, retry_after))
    body = json.dumps({"error": {
        "type": "overloaded",
        "message": f"the server is at capacity: every request thread is busy; retry after {retry_after} s",
    }}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: {retry_after}\r\n"
            "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n").encode()
    try:
        sock.setblocking(False)
        try:  # read what the client sent, so closing does not reset the connection before it reads our answer
            while sock.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        sock.send(head + body)  # small enough for an empty send buffer
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        sock.close()
        return False
    return True


def estimate_retry_after(capacity: Any, backlog: int) -> int:
    """The guard's ``Retry-After`` with ``backlog`` more requests ahead (1 s when there is no guard)."""
    if capacity is None:
        return RETRY_AFTER_MIN
    return capacity.retry_after(extra=backlog)
