"""Reading a request under deadlines: the socket the parser reads through, and the answers when it fails.

The worker (:mod:`.worker`) bounds the total time a client takes to send its
request's headers and its body; what it needs for that lives here.
"""

from __future__ import annotations

import io
import socket
import ssl
import time
from typing import Any

from ..guards.gate import waiting

__all__ = ["BodyTooLarge", "ClientTooSlow", "DeadlineSocket", "ANSWERS", "Buffered", "content_length"]


class ClientTooSlow(Exception):
    """The client did not send its request's headers or body in time: 408."""

    def __init__(self, part: str, setting: str, seconds: float) -> None:
        super().__init__(f"the request {part} did not arrive within {setting}={seconds:g}s")


class BodyTooLarge(Exception):
    """A body without a declared length ran past ``MAX_CONTENT_LENGTH``: 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than MAX_CONTENT_LENGTH={limit} bytes")


#: status line and error type of the answers this worker gives itself
ANSWERS: dict[type, tuple[str, str]] = {
    ClientTooSlow: ("408 Request Timeout", "request_timeout"),
    BodyTooLarge: ("413 Content Too Large", "request_entity_too_large"),
}


class DeadlineSocket:
    """The socket as the request parser sees it: each ``recv`` ends by :attr:`deadline`, else ClientTooSlow.

    A read that would wait for the client first gives the request's start permit back
    (:func:`~webapp.guards.gate.waiting`): a slow client holds its thread, not the requests behind it.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._plain = not isinstance(sock, ssl.SSLSocket)  # TLS reads take no flags
        #: (monotonic deadline, the exception to raise once it passes), or None: plain reads
        self.deadline: tuple[float, ClientTooSlow] | None = None

    def recv(self, size: int) -> bytes:
        if self.deadline is None:
            return self._sock.recv(size)
        at, error = self.deadline
        left = at - time.monotonic()
        if left <= 0:
            raise error
        prior = self._sock.gettimeout()  # None (blocking), or what gunicorn set to drain a body
        if prior is None and self._plain:
            try:
                return self._sock.recv(size, socket.MSG_DONTWAIT)  # what has arrived: no wait
            except (BlockingIOError, InterruptedError):
                waiting()
        self._sock.settimeout(left if prior is None else min(left, prior))
        try:
            return self._sock.recv(size)
        except TimeoutError:
            if time.monotonic() >= at:
                raise error from None
            raise  # gunicorn's own, shorter timeout
        finally:
            self._sock.settimeout(prior)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Buffered:
    """A body reader over the bytes already read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        return self._data.read(size)


def content_length(req: Any) -> int | None:
    for name, value in req.headers:
        if name == "CONTENT-LENGTH":
            try:
                return int(value)
            except ValueError:
                return None
    return None
