"""A streamed chat reads its upstream on its request's thread: no LLM pool thread while it runs, yet it still
counts against the client's capacity (503 + Retry-After beyond it), and under real gunicorn it still sends
heartbeats while the upstream is silent and closes the upstream when its client goes away mid-silence."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from flask import Flask

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from webapp import chat, create_app
from webapp.extensions import close_llm_client, get_llm_client

ROUTES = [("/api/chat", {"message": "hi", "stream": True}), ("/invoke/chat_stream", {"inputs": {"message": "hi"}})]


def make_app(upstream: FakeUpstream, tmp_path: Path, **config: Any) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                       "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"), **config})


@pytest.fixture
def app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Flask]:
    app = make_app(upstream, tmp_path)
    yield app
    close_llm_client(app)


def open_stream(app: Flask, path: str, body: dict[str, Any]) -> tuple[Any, Iterator[bytes]]:
    """A streamed response read up to its first ``content`` event: the response and the rest of its frames."""
    response = app.test_client().post(path, json=body, buffered=False, headers={"Accept": "text/event-stream"})
    assert response.status_code == 200, response.get_data(as_text=True)
    frames = iter(response.response)
    for frame in frames:
        if b'"type":"content"' in frame:
            return response, frames
    raise AssertionError("the stream ended without content")


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_a_streamed_chat_takes_no_pool_thread_and_counts_as_an_open_stream(
        app: Flask, upstream: FakeUpstream, path: str, body: dict[str, Any]) -> None:
    upstream.configure(reply="one two three four", stream_chunk_delay=0.2)
    response, frames = open_stream(app, path, body)
    llm = get_llm_client(app)
    try:
        stats = llm.pool_stats
        assert (stats.running, stats.queued) == (0, 0)  # read by this thread, not handed to the pool
        assert chat.open_streams(llm) == 1
        assert "flowbridge_llm_streams_open 1.0" in app.test_client().get("/metrics").get_data(as_text=True)
        rest = b"".join(frames)
    finally:
        response.close()
    assert b'"type":"done"' in rest and b'"type":"error"' not in rest
    assert chat.open_streams(llm) == 0
    assert upstream.stats()["streams_completed"] == 1


def test_streams_beyond_the_clients_capacity_are_refused_with_retry_after(upstream: FakeUpstream,
                                                                        tmp_path: Path) -> None:
    """One pool thread and no queue: one stream at a time, though the stream does not run on that thread."""
    app = make_app(upstream, tmp_path, LLM_ASYNC_WORKERS="1", LLM_ASYNC_QUEUE_SIZE="0")
    upstream.configure(reply="one two three", stream_chunk_delay=0.2)
    try:
        response, frames = open_stream(app, *ROUTES[0])
        try:
            for path, body in ROUTES:
                refused = app.test_client().post(path, json=body, headers={"Accept": "text/event-stream"})
                assert refused.status_code == 503, path
                assert refused.get_json()["error"]["type"] == "overloaded"
                assert int(refused.headers["Retry-After"]) >= 1
            b"".join(frames)
        finally:
            response.close()
        assert chat.open_streams(get_llm_client(app)) == 0
        again, frames = open_stream(app, *ROUTES[1])  # the slot is free again
        b"".join(frames)
        again.close()
    finally:
        close_llm_client(app)


# -- under gunicorn -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": "memory",
           "FLOWBRIDGE_SSE_HEARTBEAT": "0.2"}
    with GunicornServer(env, workers=1, threads=8, log_path=log) as server:
        yield server


def gauge(server: GunicornServer, name: str) -> float | None:
    with requests.get(server.url + "/metrics", timeout=10) as r:
        found = re.search(rf"^{name} (\S+)$", r.text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_heartbeats_go_out_while_the_upstream_is_silent(served: GunicornServer, upstream: FakeUpstream) -> None:
    upstream.configure(reply="alpha beta", stream_chunk_delay=1.5)
    lines: list[str] = []
    with httpx.Client(base_url=served.url, timeout=30) as client, \
            client.stream("POST", "/api/chat", json={"message": "hi", "stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["start", "content", "content", "done"]
    alpha, beta = (i for i, line in enumerate(lines) if '"type":"content"' in line)
    assert ": keep-alive" in lines[alpha:beta]  # between the two words, 1.5 s apart


def test_a_client_gone_while_the_upstream_is_silent_ends_the_stream_before_the_next_word(
        served: GunicornServer, upstream: FakeUpstream) -> None:
    """The next word is 60 s away: the stream is closed long before, as soon as the server looks at the client
    (the upstream itself only notices at its next write). During the stream no pool thread was busy."""
    upstream.configure(reply="first second", stream_chunk_delay=60.0)
    body = json.dumps({"message": "hi", "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        received = b""
        while b'"type":"content"' not in received:
            data = sock.recv(65536)
            assert data, received
            received += data
        assert gauge(served, "flowbridge_llm_streams_open") == 1.0
        assert gauge(served, "flowbridge_llm_pool_running") == 0.0
    for _ in range(300):  # bounded: 30 s at most, half the upstream's pause
        if gauge(served, "flowbridge_llm_streams_open") == 0.0:
            break
        requests.get(served.url + "/healthz", timeout=10).close()
    assert gauge(served, "flowbridge_llm_streams_open") == 0.0
    assert upstream.stats()["streams_completed"] == 0
