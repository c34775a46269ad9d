"""The event-stream protocol of ``webapp.sse.EventStream``, driven directly (no server)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from llm_client import LLMTimeoutError
from webapp import sse
from webapp.sse import HEARTBEAT_FRAME, EventStream, client_gone


def frames(stream: EventStream) -> list[Any]:
    """Decoded events, with heartbeats as the string "heartbeat"."""
    out: list[Any] = []
    for frame in stream:
        if frame == HEARTBEAT_FRAME:
            out.append("heartbeat")
            continue
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
        assert frame.count(b"\n") == 2, "one data line per frame"
        out.append(json.loads(frame[6:]))
    return out


def types(events: list[Any]) -> list[str]:
    return [e if isinstance(e, str) else e["type"] for e in events]


def test_a_well_formed_source_passes_through() -> None:
    source = [sse.start({"n": 2}), sse.progress(1, 2, "half"), sse.content("hi"), sse.done({"ok": True})]
    events = frames(EventStream(iter(source)))
    assert events == source
    assert events[1]["data"] == {"current": 1, "total": 2, "percentage": 50, "message": "half"}


def test_start_is_added_and_a_done_ends_a_source_that_just_stops() -> None:
    events = frames(EventStream(iter([sse.content("a"), sse.content("b")])))
    assert types(events) == ["start", "content", "content", "done"]


def test_an_empty_source_still_starts_and_ends() -> None:
    assert types(frames(EventStream(iter([])))) == ["start", "done"]


def test_the_first_terminal_event_ends_the_stream_and_closes_the_source() -> None:
    closed: list[bool] = []

    def source() -> Iterator[dict[str, Any]]:
        try:
            yield sse.start()
            yield sse.error("broken", "X")
            yield sse.done()  # never read
            yield sse.content("never")
        finally:
            closed.append(True)

    events = frames(EventStream(source()))
    assert types(events) == ["start", "error"]
    assert events[1] == {"type": "error", "data": "broken", "error_code": "X"}
    assert closed == [True]


def test_an_exception_in_a_sync_source_becomes_one_error_event() -> None:
    def source() -> Iterator[dict[str, Any]]:
        yield sse.start()
        yield sse.content("partial")
        raise LLMTimeoutError("upstream took too long")

    events = frames(EventStream(source()))
    assert types(events) == ["start", "content", "error"]
    assert events[-1]["error_code"] == "upstream_timeout"
    assert "took too long" in events[-1]["data"]


def test_an_unexpected_exception_hides_its_message() -> None:
    def source() -> Iterator[dict[str, Any]]:
        yield sse.start()
        raise KeyError("internal detail /etc/secret")

    events = frames(EventStream(source()))
    assert events[-1]["error_code"] == "internal_error"
    assert "secret" not in events[-1]["data"]


@pytest.mark.parametrize("bad", [{"type": "weird"}, "text", {"data": 1}])
def test_an_invalid_event_is_an_error_naming_it(bad: Any) -> None:
    events = frames(EventStream(iter([sse.start(), bad])))
    assert types(events) == ["start", "error"]


def test_an_async_source_streams_and_its_exception_becomes_an_error() -> None:
    async def source() -> AsyncIterator[dict[str, Any]]:
        yield sse.start()
        await asyncio.sleep(0)
        yield sse.content("x")
        raise ValueError("bad input")

    events = frames(EventStream(source()))
    assert types(events) == ["start", "content", "error"]


def test_an_idle_async_stream_sends_heartbeats() -> None:
    async def source() -> AsyncIterator[dict[str, Any]]:
        yield sse.start()
        await asyncio.sleep(1.0)  # ten heartbeat periods: one at least, even on a busy machine
        yield sse.done()

    events = frames(EventStream(source(), heartbeat=0.1))
    assert types(events)[0] == "start" and types(events)[-1] == "done"
    assert "heartbeat" in types(events)


def test_a_client_that_goes_away_closes_an_async_source_that_is_waiting() -> None:
    state = {"finally": False, "polls": 0}

    async def source() -> AsyncIterator[dict[str, Any]]:
        try:
            yield sse.start()
            await asyncio.sleep(30)  # waiting on the upstream
            yield sse.done()
        finally:
            state["finally"] = True

    def gone() -> bool:
        state["polls"] += 1
        return state["polls"] >= 2

    events = frames(EventStream(source(), gone=gone, probe_interval=0.05))
    assert types(events) == ["start"]
    assert state["finally"] is True


def test_a_client_that_goes_away_closes_a_sync_source_between_events() -> None:
    state = {"finally": False, "produced": 0}

    def source() -> Iterator[dict[str, Any]]:
        try:
            for i in range(1000):
                state["produced"] += 1
                yield sse.progress(i, 1000)
        finally:
            state["finally"] = True

    stream = EventStream(source(), gone=lambda: state["produced"] >= 3)
    events = frames(stream)
    assert state["finally"] is True
    assert state["produced"] == 3
    assert types(events) == ["start", "progress", "progress", "progress"]


def test_closing_the_response_body_closes_the_source() -> None:
    state = {"finally": False}

    async def source() -> AsyncIterator[dict[str, Any]]:
        try:
            yield sse.start()
            yield sse.content("a")
            yield sse.content("b")
        finally:
            state["finally"] = True

    body = iter(EventStream(source()))
    next(body)
    next(body)
    body.close()  # what the WSGI server does when the write fails
    assert state["finally"] is True


def test_client_gone_tells_an_open_socket_from_a_closed_one() -> None:
    server, client = socket.socketpair()
    try:
        assert client_gone(server) is False
        client.sendall(b"pipelined request bytes")
        assert client_gone(server) is False
        client.close()
        server.recv(100)  # consume what was sent; then only the FIN is left
        assert client_gone(server) is True
    finally:
        server.close()
    assert client_gone(None) is False
