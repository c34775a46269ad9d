"""The total deadline of an LLM call (LLM_TOTAL_TIMEOUT, and the deadline of the request it serves)
against a fake upstream that trickles a byte at a time and never finishes."""

from __future__ import annotations

import asyncio
import time

import pytest

from async_utils.flask_bridge import set_deadline
from llm_client import LLMClient, LLMConfigError, LLMTimeoutError
from tests.fake_upstream import FakeUpstream

#: A byte every 50 ms: far inside any per-read timeout, forever.
TRICKLE = {"kind": "trickle", "interval": 0.05}
MESSAGES = [{"role": "user", "content": "hi"}]


def make(upstream: FakeUpstream, **env: str) -> LLMClient:
    # LLM_TIMEOUT (per read) is far longer than the deadlines under test: it must not be what ends the call.
    return LLMClient(upstream.base_url, env={"LLM_TIMEOUT": "60", "LLM_MAX_RETRIES": "0", **env})


def closed_by_client(upstream: FakeUpstream, count: int = 1) -> bool:
    """The fake upstream saw the client close ``count`` trickling connections (bounded wait)."""
    return upstream.wait_for(lambda s: s["trickles_closed"] >= count, timeout=15)


@pytest.mark.parametrize("call", ["chat", "stream", "embed"])
def test_a_trickling_upstream_is_cut_at_the_total_deadline(upstream: FakeUpstream, call: str) -> None:
    upstream.push_faults(TRICKLE)
    with make(upstream, LLM_TOTAL_TIMEOUT="0.5") as client:
        with pytest.raises(LLMTimeoutError, match=r"LLM_TOTAL_TIMEOUT=0\.5s"):
            if call == "chat":
                client.chat("hi")
            elif call == "stream":
                list(client.chat_stream("hi"))
            else:
                client.embed(["hi"])
        assert closed_by_client(upstream)
    assert upstream.stats()["trickles_started"] == 1


def test_retries_do_not_restart_the_deadline(upstream: FakeUpstream) -> None:
    """A 500, then a trickle: the retry gets what is left of the one deadline, and no third attempt is made."""
    upstream.push_faults({"status": 500}, TRICKLE, TRICKLE, TRICKLE)
    with make(upstream, LLM_TOTAL_TIMEOUT="1", LLM_MAX_RETRIES="5", LLM_RETRY_INITIAL_DELAY="0") as client:
        with pytest.raises(LLMTimeoutError, match=r"LLM_TOTAL_TIMEOUT=1s.*answered 500"):
            client.chat("hi")
        assert closed_by_client(upstream)
    stats = upstream.stats()
    assert stats["requests"] == 2 and stats["trickles_started"] == 1


def test_no_retry_wait_outlasts_the_deadline(upstream: FakeUpstream) -> None:
    """A Retry-After longer than the time left ends the call now, with the upstream's error."""
    upstream.push_faults({"status": 503, "headers": {"Retry-After": "30"}})
    with make(upstream, LLM_TOTAL_TIMEOUT="5", LLM_MAX_RETRIES="3") as client:
        with pytest.raises(Exception, match="answered 503"):
            client.chat("hi")
    assert upstream.stats()["requests"] == 1


def test_the_request_deadline_reaches_calls_on_the_pool(upstream: FakeUpstream) -> None:
    """A deadline set with set_deadline (the web app does, per request) ends a call on a pool thread
    by then, though LLM_TOTAL_TIMEOUT is far away."""
    upstream.push_faults(TRICKLE)

    async def call(client: LLMClient) -> str:
        set_deadline(time.monotonic() + 0.5)
        try:
            return await client.chat_async("hi")
        finally:
            set_deadline(None)

    with make(upstream, LLM_TOTAL_TIMEOUT="300") as client:
        with pytest.raises(LLMTimeoutError, match="the deadline of the request it serves"):
            asyncio.run(call(client))
        assert closed_by_client(upstream)
        assert client.pool_stats.running == 0


def test_a_request_that_ends_in_time_releases_the_calls_it_leaves_running(upstream: FakeUpstream) -> None:
    """Work a request leaves behind (a background task) inherits its context, deadline included; once the
    request ended before its deadline, the call is bound by LLM_TOTAL_TIMEOUT only."""
    upstream.configure(delay=1.5)

    async def call(client: LLMClient) -> str:
        set_deadline(time.monotonic() + 0.5)
        left_running = asyncio.ensure_future(client.chat_async("hi"))  # a copy of this context
        try:
            assert await asyncio.to_thread(upstream.wait_for, lambda s: s["in_flight"] == 1, 10)
        finally:
            set_deadline(None)  # the request is over, in time
        return await left_running

    with make(upstream, LLM_TOTAL_TIMEOUT="60") as client:
        assert asyncio.run(call(client)) == "echo: hi"


def test_a_stream_stalling_after_its_first_event_names_llm_timeout(upstream: FakeUpstream) -> None:
    upstream.configure(reply="one two three", stream_chunk_delay=5.0)
    with LLMClient(upstream.base_url, env={"LLM_TIMEOUT": "0.5", "LLM_MAX_RETRIES": "0"}) as client:
        stream = client.chat_stream("hi")
        assert next(stream) == "one"
        with pytest.raises(LLMTimeoutError, match=r"stalled: no event within LLM_TIMEOUT=0\.5s"):
            next(stream)


def test_a_stream_trickling_after_its_first_event_is_cut_at_llm_timeout(upstream: FakeUpstream) -> None:
    """Bytes that never make an event do not keep a stream alive: no event for LLM_TIMEOUT ends it,
    though each byte comes far inside the socket's read timeout."""
    first = 'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}\n\n'
    upstream.push_faults({**TRICKLE, "first": first})
    with make(upstream, LLM_TIMEOUT="1", LLM_TOTAL_TIMEOUT="300") as client:
        stream = client.chat_stream("hi")
        assert next(stream) == "Hel"
        with pytest.raises(LLMTimeoutError, match=r"stalled: no event within LLM_TIMEOUT=1s"):
            next(stream)
        assert closed_by_client(upstream)


def test_a_running_stream_is_exempt_from_the_total_deadline(upstream: FakeUpstream) -> None:
    """After its first event a stream may run longer than LLM_TOTAL_TIMEOUT, while events keep coming."""
    upstream.configure(reply=" ".join(["word"] * 8), stream_chunk_delay=0.5)
    with make(upstream, LLM_TOTAL_TIMEOUT="2", LLM_TIMEOUT="5") as client:
        assert "".join(client.chat_stream("hi")) == " ".join(["word"] * 8)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "nan"])
def test_a_bad_total_timeout_names_the_variable(value: str) -> None:
    with pytest.raises(LLMConfigError, match="LLM_TOTAL_TIMEOUT"):
        LLMClient("http://127.0.0.1:9/v1", env={"LLM_TOTAL_TIMEOUT": value})
