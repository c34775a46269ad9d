"""What gunicorn cannot parse gets a JSON error from our worker, not gunicorn's HTML page: a URL past
``limit_request_line`` (414), too many headers (431), a request line that is not HTTP (400). The body
carries both error shapes' fields (flowbridge's and OpenAI's), since the route is not known yet."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    folder = tmp_path_factory.mktemp("parse_errors")
    env = {"LLM_BASE_URL": _upstream_server.base_url, "FLOWBRIDGE_TASK_DB": str(folder / "tasks.db")}
    with GunicornServer(env, workers=1, threads=4, log_path=folder / "gunicorn.log") as server:
        yield server


def raw(port: int, request: bytes) -> tuple[bytes, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        for _ in range(1000):  # until the server closes the connection
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, json.loads(body)


def check(head: bytes, body: dict, status: bytes, error_type: str, says: str) -> None:
    assert head.startswith(b"HTTP/1.1 " + status + b" "), head
    lowered = head.lower()
    assert b"content-type: application/json" in lowered and b"connection: close" in lowered
    assert b"x-content-type-options: nosniff" in lowered
    error = body["error"]
    assert error["type"] == error_type == error["code"] and error["param"] is None
    assert says in error["message"]
    assert len(error["message"]) < 400  # the parser's text is cut, never the whole request line echoed


def test_a_url_past_the_request_line_limit_is_a_414_in_json(served: GunicornServer) -> None:
    response = requests.get(f"{served.url}/api/tasks", params={"status": "x" * 5000}, timeout=30)
    assert response.status_code == 414
    error = response.json()["error"]
    assert error["type"] == "uri_too_long" and "request line" in error["message"]
    head, body = raw(served.port, b"GET /v1/models?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    check(head, body, b"414", "uri_too_long", "longer than the server takes")


def test_too_many_headers_are_a_431_in_json(served: GunicornServer) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    head, body = raw(served.port, b"GET /api/tasks HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    check(head, body, b"431", "headers_too_large", "request headers")


@pytest.mark.parametrize("line", [b"GARBAGE\r\n\r\n", b"GET /api/tasks HTTP/9.9\r\nHost: x\r\n\r\n",
                                  b"GET /api/tasks HTTP/1.1\r\nBad Header: x\r\n\r\n"],
                         ids=["no-http", "version", "header-name"])
def test_a_request_that_is_not_http_is_a_400_in_json(served: GunicornServer, line: bytes) -> None:
    head, body = raw(served.port, line)
    check(head, body, b"400", "bad_request", "not valid HTTP/1.1")


def test_the_server_still_answers_afterwards(served: GunicornServer) -> None:
    assert requests.get(f"{served.url}/healthz", timeout=30).status_code == 200


def test_the_answer_is_cut_and_keeps_both_shapes() -> None:
    from gunicorn.http.errors import InvalidRequestLine

    from webapp.server.reading import answer_for

    status, body = answer_for(InvalidRequestLine("x" * 10_000)) or ("", b"")
    assert status == "400 Bad Request"
    error = json.loads(body)["error"]
    assert set(error) == {"type", "message", "param", "code"} and len(error["message"]) < 300
    assert answer_for(ValueError("not a parse error")) is None
