"""Slow clients under real gunicorn (webapp.server.worker): a client trickling its headers or body is cut
off with 408 once FLOWBRIDGE_HEADER_TIMEOUT / FLOWBRIDGE_BODY_TIMEOUT has passed, however steadily it
sends, and /healthz keeps answering during such an attack."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

BODY_TRICKLERS, HEADER_TRICKLERS = 32, 16
#: bytes a trickler would send at most, one every TRICKLE seconds: far beyond the 1 s timeouts below
TRICKLE_BYTES, TRICKLE = 150, 0.2


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    """gunicorn.conf.py's own workers and threads, with 1 s to send the headers and 1 s for the body."""
    folder = tmp_path_factory.mktemp("slow_clients")
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0",
           "FLOWBRIDGE_TASK_DB": str(folder / "tasks.db"),
           "FLOWBRIDGE_HEADER_TIMEOUT": "1", "FLOWBRIDGE_BODY_TIMEOUT": "1"}
    server = GunicornServer(env, log_path=folder / "gunicorn.log")
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS"):
        server.env.pop(name, None)
    with server:
        yield server


def trickle(port: int, start: bytes, drip: bytes) -> dict[str, Any]:
    """Send ``start`` at once, then ``drip`` one byte at a time until the server answers or hangs up
    (or TRICKLE_BYTES are sent). What the server said and how many bytes were dripped."""
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(start)
        try:
            for sent in range(1, TRICKLE_BYTES + 1):  # noqa: B007 (read after the loop)
                readable, _, _ = select.select([sock], [], [], TRICKLE)
                if readable:
                    break
                sock.sendall(drip[sent - 1:sent])
            for _ in range(100):  # the answer, until the server closes the connection
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    return {"answer": answer, "dripped": sent}


def header_trickler(port: int) -> dict[str, Any]:
    start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    return trickle(port, start, b"a" * TRICKLE_BYTES)


def body_trickler(port: int) -> dict[str, Any]:
    body = json.dumps({"message": "x" * TRICKLE_BYTES}).encode()
    start = (b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % len(body))
    return trickle(port, start, body)


def assert_408(result: dict[str, Any], part: str, setting: str) -> None:
    head, _, body = result["answer"].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), result
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    assert error == {"type": "request_timeout", "message": f"the request {part} did not arrive within {setting}=1s",
                     "param": None, "code": "request_timeout"}  # both error shapes: the route is not known yet
    assert result["dripped"] < TRICKLE_BYTES  # cut off long before the client would have finished


def test_slow_headers_and_bodies_get_408_and_health_checks_keep_answering(served: GunicornServer) -> None:
    with ThreadPoolExecutor(BODY_TRICKLERS + HEADER_TRICKLERS) as pool:
        bodies = [pool.submit(body_trickler, served.port) for _ in range(BODY_TRICKLERS)]
        headers = [pool.submit(header_trickler, served.port) for _ in range(HEADER_TRICKLERS)]
        health = []
        for _ in range(5):
            with requests.get(served.url + "/healthz", timeout=10) as r:
                health.append(r.status_code)
        results = [f.result(timeout=120) for f in bodies + headers]
    assert health == [200] * 5
    for result in results[:BODY_TRICKLERS]:
        assert_408(result, "body", "FLOWBRIDGE_BODY_TIMEOUT")
    for result in results[BODY_TRICKLERS:]:
        assert_408(result, "headers", "FLOWBRIDGE_HEADER_TIMEOUT")


def test_bodies_sent_in_time_are_served_however_they_arrive(served: GunicornServer, upstream: FakeUpstream) -> None:
    """The worker reads bodies itself: chunked ones, 100-continue and pieces all reach the app intact."""
    def raw(request: bytes, *, then: bytes = b"", wait_for_continue: bool = False) -> bytes:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
            sock.sendall(request)
            if wait_for_continue:
                assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(then)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return answer

    head = b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
    body = json.dumps({"message": "in pieces"}).encode()
    chunked = raw(head + b"Transfer-Encoding: chunked\r\n\r\n",
                  then=b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, body[:5], len(body) - 5, body[5:]))
    continued = raw(head + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body), then=body,
                    wait_for_continue=True)
    split = raw(head + b"Content-Length: %d\r\n\r\n" % len(body) + body[:7], then=body[7:])
    for answer in (chunked, continued, split):
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["response"] == "echo: in pieces"
    # a chunked body over MAX_CONTENT_LENGTH is 413 JSON, as one with a Content-Length is
    big = json.dumps({"message": "x" * (1024 * 1024 + 10)}).encode()
    answer = raw(head + b"Transfer-Encoding: chunked\r\n\r\n", then=b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == {
        "type": "request_entity_too_large", "message": "the request body is larger than MAX_CONTENT_LENGTH=1048576 bytes",
            "param": None, "code": "request_entity_too_large"}
