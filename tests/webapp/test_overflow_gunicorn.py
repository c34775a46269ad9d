"""A worker whose every thread is busy, with its overflow full, answers 503 from its main loop at once,
instead of leaving the connection unanswered in gthread's unbounded executor queue."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from webapp.server.overflow import first_line, is_light, peek


def ask(url: str, i: int) -> dict[str, Any]:
    with requests.post(f"{url}/api/chat", json={"message": f"q{i}"}, timeout=60) as r:
        return {"status": r.status_code, "body": r.json(), "retry_after": r.headers.get("Retry-After")}


def test_requests_beyond_threads_and_overflow_are_refused_at_once(tmp_path: Path, upstream: FakeUpstream) -> None:
    """8 threads, no capacity guard: 8 slow chats hold every thread, 16 more wait in the overflow
    (its smallest size), and the next ones are refused by the worker itself, while those 24 still finish."""
    env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"),
           "FLOWBRIDGE_RESERVED_THREADS": "0", "FLOWBRIDGE_QUEUE_DEPTH": "0"}
    with GunicornServer(env, workers=1, threads=8, log_path=tmp_path / "gunicorn.log") as server:
        upstream.configure(delay=6.0)
        with ThreadPoolExecutor(29) as pool:
            running = [pool.submit(ask, server.url, i) for i in range(8)]
            assert upstream.wait_for(lambda s: s["in_flight"] == 8, timeout=30)
            # 21 more at once: 16 fit in the overflow and wait for a thread, 5 are refused
            more = [pool.submit(ask, server.url, 8 + i) for i in range(21)]
            refused = []
            for future in as_completed(more, timeout=60):
                if future.result(timeout=60)["status"] == 503:
                    refused.append(future.result())
                if len(refused) == 5:
                    # every refusal came while the first eight still ran: none of them waited for a thread
                    assert not any(f.done() for f in running)
                    break
            answers = [f.result(timeout=60) for f in running + more]
        with requests.get(server.url + "/healthz", timeout=30) as r:
            assert r.status_code == 200
    assert sorted(a["status"] for a in answers) == [200] * 24 + [503] * 5
    assert len(refused) == 5
    for r in refused:
        assert r["body"]["error"]["type"] == "overloaded"
        assert "every request thread is busy" in r["body"]["error"]["message"]
        assert int(r["retry_after"]) >= 1


@pytest.mark.parametrize(("line", "light"), [
    (b"GET /healthz HTTP/1.1", True), (b"HEAD /readyz HTTP/1.1", True), (b"GET /metrics?x=1 HTTP/1.1", True),
    (b"POST /healthz HTTP/1.1", False), (b"GET /healthz/x HTTP/1.1", False), (b"GET /api/tasks HTTP/1.1", False),
    (b"", False), (b"GARBAGE", False),
])
def test_health_and_status_lines_are_recognised(line: bytes, light: bool) -> None:
    assert is_light(line) is light


def test_peek_does_not_consume() -> None:
    a, b = socket.socketpair()
    with b:
        with a:
            assert peek(b) is None  # nothing yet
            a.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert first_line(peek(b) or b"") == b"GET /healthz HTTP/1.1"
            assert b.recv(100).startswith(b"GET /healthz")  # still there for the parser
        assert peek(b) == b""  # closed by the client
