"""Waiting for an upstream's next bytes on the reading thread, with a callback while it is silent.

A :class:`~llm_client._streaming.ChatStream` read by a web request's own thread
(no pool thread, no hand-over per token) blocks in ``recv`` while the model
thinks; the request then cannot notice that its client went away, nor send
the heartbeats that keep proxies from closing an idle stream. :func:`paced`
wraps the response's chunks: before each one is read, it waits until the
upstream socket has bytes (or bytes already sit in the response's buffer), and
every ``interval`` seconds of silence it calls ``on_idle()`` on the same
thread. Whatever ``on_idle`` raises ends the read there (the caller closes
the stream).

The parser asks for another chunk only once it has used up the previous one,
so "no bytes buffered and the socket not readable" means the next read would
block. Where the socket or the buffer cannot be seen (another HTTP stack, a
response already closed), the chunks are read as they are, without waiting.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["paced"]

_READY = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


class _Upstream:
    """The socket of a streamed response and the buffer in front of it."""

    def __init__(self, sock: socket.socket, buffer: Any) -> None:
        self.sock = sock
        self.buffer = buffer  # the BufferedReader http.client reads the body through
        self.poller = select.poll()
        self.poller.register(sock.fileno(), _READY)

    @classmethod
    def of(cls, response: Any) -> _Upstream | None:
        """The upstream of a ``requests`` response streamed by urllib3, or None when it cannot be seen."""
        raw = getattr(response, "raw", None)
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        buffer = getattr(getattr(raw, "_fp", None), "fp", None)
        if not isinstance(sock, socket.socket) or not hasattr(buffer, "peek") or sock.fileno() < 0:
            return None
        return cls(sock, buffer)

    def ready(self, timeout: float) -> bool:
        """Whether the next read has bytes to read (or will fail at once), waiting up to ``timeout`` s."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        if self.poller.poll(0) or self._buffered():
            return True
        return bool(self.poller.poll(max(0, int(timeout * 1000))))

    def _buffered(self) -> bool:
        """Whether the response's buffer holds bytes; peeks without blocking (nothing is consumed)."""
        try:
            prior = self.sock.gettimeout()
        except OSError:
            return True  # closed under us: let the read say so
        try:
            self.sock.settimeout(0.0)
            return bool(self.buffer.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
            return False
        except (OSError, ValueError):
            return True  # a broken or closed connection: let the read say so
        finally:
            try:
                self.sock.settimeout(prior)
            except OSError:
                pass


def paced(response: Any, chunks: Iterator[bytes], interval: float,
          on_idle: Callable[[], None]) -> Iterator[bytes]:
    """``chunks`` of ``response``, each read once bytes are there; ``on_idle()`` every ``interval`` s until then.

    :param interval: seconds of silence between two calls of ``on_idle`` (> 0).
    :param on_idle: runs on the reading thread; what it raises propagates to the reader.
    """
    upstream = _Upstream.of(response)
    while True:
        if upstream is not None:
            while not upstream.ready(interval):
                on_idle()
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        yield chunk
