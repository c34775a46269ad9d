"""Servers of the outbound-URL tests: a canary that must never be reached, and allowed hosts that redirect.

The canary records every TCP connection it accepts (before reading a byte of the request), in
the order the kernel queued them. :meth:`Canary.hits` first connects a sentinel of its own and
waits until the canary has accepted it: every connection made before the sentinel has then been
recorded, so "no hits" is a fact, not a guess about timing.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

#: Longest wait for the canary to accept its sentinel connection.
SENTINEL_WAIT = 10.0


class _CanaryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _answer(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


class _CanaryServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        self.accepted: list[tuple[Any, ...]] = []
        super().__init__(address, _CanaryHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.accepted.append(tuple(client_address))  # the serving thread, in accept order
        return True


class Canary:
    """A server on 127.0.0.1 (and [::1] on the same port when it can) that records every connection."""

    def __init__(self) -> None:
        self.servers = [_CanaryServer(("127.0.0.1", 0), socket.AF_INET)]
        self.port = self.servers[0].server_address[1]
        try:
            self.servers.append(_CanaryServer(("::1", self.port), socket.AF_INET6))
        except OSError:  # no IPv6 loopback here, or the port is taken on it: IPv4 only
            pass
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        for server in self.servers:
            server.accepted.clear()

    def hits(self) -> list[tuple[Any, ...]]:
        """Every connection accepted so far, other than the sentinels."""
        found = []
        for server in self.servers:
            host = server.server_address[0]
            with socket.create_connection((host, self.port), timeout=SENTINEL_WAIT) as sentinel:
                mine = tuple(sentinel.getsockname())
                deadline = time.monotonic() + SENTINEL_WAIT
                while mine not in server.accepted[:] and time.monotonic() < deadline:
                    time.sleep(0.005)
                seen = server.accepted[:]
                assert mine in seen, "the canary did not accept its sentinel in time"
            found += [peer for peer in seen if peer != mine]
            server.accepted[:] = [peer for peer in server.accepted if peer != mine]
        return found

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def encode_location(location: str) -> str:
    """A Location header value as a path segment of the redirecting server (any characters survive)."""
    return base64.urlsafe_b64encode(location.encode("utf-8")).decode("ascii")


class _AllowedHandler(BaseHTTPRequestHandler):
    """``/to/<status>/<encoded Location>/...`` answers that redirect; anything else 200 with what it saw."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        server: Any = self.server
        server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
        parts = urlsplit(self.path).path.split("/")
        if len(parts) > 3 and parts[1] == "to":
            location = base64.urlsafe_b64decode(parts[3]).decode("utf-8")
            self.send_response(int(parts[2]))
            # added raw, as UTF-8 bytes (send_header would refuse some): the Location spelling is the test
            self._headers_buffer.append(f"Location: {location}\r\n".encode())  # type: ignore[attr-defined]
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def allowed_server() -> Iterator[ThreadingHTTPServer]:
    """A server on 127.0.0.1 that records requests (``.requests``) and redirects on ``/to/...``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AllowedHandler)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def canary_server() -> Iterator[Canary]:
    canary = Canary()
    try:
        yield canary
    finally:
        canary.close()
