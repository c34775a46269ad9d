"""A ChatStream read on the caller's thread with ``on_idle`` (llm_client._idle.paced): the callback runs while
the upstream is silent, what it raises ends the read, and events already received are never held back."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from llm_client import LLMClient
from tests.fake_upstream import FakeUpstream


class Stop(Exception):
    """What the tests' idle callbacks raise."""


def test_on_idle_runs_while_the_upstream_is_silent_and_its_exception_ends_the_read(upstream: FakeUpstream) -> None:
    upstream.configure(reply="first second third", stream_chunk_delay=3.0)
    calls: list[str] = []

    def on_idle() -> None:
        calls.append(threading.current_thread().name)
        if len(calls) >= 3:
            raise Stop

    with LLMClient(upstream.base_url, max_retries=0) as client:
        stream = client.chat_stream("hi")
        stream.on_idle = (0.05, on_idle)
        with stream:
            assert next(stream) == "first"
            with pytest.raises(Stop):
                next(stream)  # the next word is 3 s away: the callback ends the wait after 0.15 s
        assert stream.closed
        # every call on the reading thread; the upstream finds its stream closed at its next word
        assert calls == [threading.current_thread().name] * 3
        assert upstream.wait_for(lambda s: s["streams_closed_early"] >= 1, timeout=20)
        assert upstream.stats()["streams_completed"] == 0


def test_a_stream_without_on_idle_reads_as_before(upstream: FakeUpstream) -> None:
    upstream.configure(reply="one two three")
    with LLMClient(upstream.base_url, max_retries=0) as client:
        assert "".join(client.chat_stream("hi")) == "one two three"


@pytest.fixture
def held_server() -> Iterator[tuple[int, threading.Event]]:
    """An SSE upstream on 127.0.0.1 that sends three events in one write, then holds the rest until released."""
    release = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def event(delta: dict[str, str], finish: str | None = None) -> bytes:
        import json

        return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode() \
            + b"\n\n"

    def chunk(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:
                body += conn.recv(65536)
            burst = b"".join(chunk(event({"content": word})) for word in ("a", "b", "c"))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + burst)
            if release.wait(30):
                conn.sendall(chunk(event({}, "stop")) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], release
    finally:
        release.set()
        listener.close()
        thread.join(10)


def test_events_already_received_are_not_held_back(held_server: tuple[int, threading.Event]) -> None:
    """Three events arrive in one read: all three are delivered while the upstream is still silent."""
    port, release = held_server
    idle_calls = 0

    def on_idle() -> None:
        nonlocal idle_calls
        idle_calls += 1
        if idle_calls > 400:  # bounded: 20 s of waiting for bytes that were already there
            raise Stop

    with LLMClient(f"http://127.0.0.1:{port}/v1", max_retries=0) as client:
        stream = client.chat_stream("hi")
        stream.on_idle = (0.05, on_idle)
        with stream:
            assert [next(stream), next(stream), next(stream)] == ["a", "b", "c"]
            release.set()
            assert list(stream) == []
            assert stream.finish_reason == "stop"
