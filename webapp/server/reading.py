"""Reading a request under deadlines: the socket the parser reads through, and the answers when it fails.

The worker (:mod:`.worker`) bounds the total time a client takes to send its
request's headers and its body; what it needs for that lives here.
"""

from __future__ import annotations

import io
import json
import socket
import ssl
import time
from typing import Any

from gunicorn.http import errors as http_errors

from ..guards.gate import waiting

__all__ = ["BodyTooLarge", "Buffered", "ClientTooSlow", "DeadlineSocket", "answer_for", "content_length"]


class ClientTooSlow(Exception):
    """The client did not send its request's headers or body in time: 408."""

    def __init__(self, part: str, setting: str, seconds: float) -> None:
        super().__init__(f"the request {part} did not arrive within {setting}={seconds:g}s")


class BodyTooLarge(Exception):
    """A body without a declared length ran past ``MAX_CONTENT_LENGTH``: 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than MAX_CONTENT_LENGTH={limit} bytes")


#: The failures to read a request that the worker answers itself, in JSON: (exception classes, status line,
#: error type, what the message starts with). gunicorn's own answer to its parse errors is an HTML page;
#: the rest (a TLS error, a forbidden proxy line, its configuration) stay gunicorn's.
_ANSWERS: tuple[tuple[type | tuple[type, ...], str, str, str], ...] = (
    (ClientTooSlow, "408 Request Timeout", "request_timeout", ""),
    (BodyTooLarge, "413 Content Too Large", "request_entity_too_large", ""),
    (http_errors.LimitRequestLine, "414 URI Too Long", "uri_too_long",
     "the request line (method, URL, version) is longer than the server takes: "),
    (http_errors.LimitRequestHeaders, "431 Request Header Fields Too Large", "headers_too_large",
     "the request headers are more or larger than the server takes: "),
    (http_errors.ExpectationFailed, "417 Expectation Failed", "expectation_failed", "Expect: "),
    (http_errors.UnsupportedTransferCoding, "501 Not Implemented", "unsupported_transfer_coding", ""),
    ((http_errors.InvalidRequestLine, http_errors.InvalidRequestMethod, http_errors.InvalidHTTPVersion,
      http_errors.InvalidHeader, http_errors.InvalidHeaderName, http_errors.InvalidProxyLine,
      http_errors.InvalidSchemeHeaders, http_errors.ObsoleteFolding, http_errors.InvalidChunkSize,
      http_errors.ChunkMissingTerminator, http_errors.InvalidChunkExtension, http_errors.InvalidH2CPreface),
     "400 Bad Request", "bad_request", "the request is not valid HTTP/1.1: "),
)
#: Characters of the parser's message kept in an answer (it may quote the request line).
_MESSAGE_CHARS = 200


def answer_for(exc: BaseException) -> tuple[str, bytes] | None:
    """The status line and JSON body the worker answers ``exc`` with; None: not a failure to read a request.

    The body has both error shapes' fields (``{"error": {"type", "message", "param", "code"}}``): the
    route, and so whether the client speaks flowbridge's API or OpenAI's, is not known yet.
    """
    for classes, status, error_type, lead in _ANSWERS:
        if isinstance(exc, classes):
            detail = str(exc) or type(exc).__name__
            if len(detail) > _MESSAGE_CHARS:
                detail = detail[:_MESSAGE_CHARS] + "…"
            body = {"error": {"type": error_type, "message": lead + detail, "param": None, "code": error_type}}
            return status, json.dumps(body).encode()
    return None


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
