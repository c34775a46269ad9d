"""POST /api/chat against an upstream that misbehaves: trickles, rate-limits, sends bad bodies or
cuts answers at max_tokens; streamed and not, through the Flask app."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from webapp import create_app
from webapp.extensions import close_llm_client, get_llm_client

TRICKLE = {"kind": "trickle", "interval": 0.05}


def make_app(upstream: FakeUpstream, tmp_path: Path, **config: Any) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                       "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"), **config})


@pytest.fixture
def app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Flask]:
    app = make_app(upstream, tmp_path)
    yield app
    close_llm_client(app)


def chat(client: FlaskClient, **body: Any) -> Any:
    return client.post("/api/chat", json={"message": "hi", **body})


def events(client: FlaskClient, **body: Any) -> list[dict[str, Any]]:
    """The events of a streamed answer."""
    response = chat(client, stream=True, **body)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    return [json.loads(line[6:]) for line in response.get_data(as_text=True).splitlines()
            if line.startswith("data: ")]


# -- the total deadline, and the request's ------------------------------------------------------


def test_a_trickling_upstream_frees_its_pool_thread_at_the_request_deadline(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The client gets its 504 at FLOWBRIDGE_REQUEST_TIMEOUT, and the LLM call ends then too: the
    upstream sees its connection closed and the pool thread is free, long before LLM_TOTAL_TIMEOUT."""
    app = make_app(upstream, tmp_path, FLOWBRIDGE_REQUEST_TIMEOUT=1, LLM_TIMEOUT="60", LLM_TOTAL_TIMEOUT="300")
    upstream.push_faults(TRICKLE)
    try:
        response = chat(app.test_client())
        assert response.status_code == 504
        # the view's timer and the call's end come at the same moment; whichever is first, the deadline is named
        assert response.get_json()["error"]["type"] == "deadline_exceeded"
        assert upstream.wait_for(lambda s: s["trickles_closed"] == 1, timeout=15)
        pool = get_llm_client(app)
        deadline = time.monotonic() + 15
        while pool.pool_stats.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pool.pool_stats.running == 0
    finally:
        close_llm_client(app)


def test_a_trickling_upstream_is_cut_at_llm_total_timeout(upstream: FakeUpstream, tmp_path: Path) -> None:
    app = make_app(upstream, tmp_path, FLOWBRIDGE_REQUEST_TIMEOUT=60, LLM_TOTAL_TIMEOUT="0.5")
    upstream.push_faults(TRICKLE, TRICKLE)
    try:
        response = chat(app.test_client())
        assert response.status_code == 504
        assert response.get_json()["error"]["type"] == "upstream_timeout"
        assert "LLM_TOTAL_TIMEOUT=0.5s" in response.get_json()["error"]["message"]
        last = events(app.test_client())[-1]
        assert last["type"] == "error" and last["error_code"] == "upstream_timeout"
        assert "LLM_TOTAL_TIMEOUT=0.5s" in last["data"]
        assert upstream.wait_for(lambda s: s["trickles_closed"] == 2, timeout=15)
    finally:
        close_llm_client(app)


# -- rate limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sent", "expected"), [("7", 7), ("2.2", 3), ("100000", 300)])
def test_an_upstream_rate_limit_is_a_429_with_its_retry_after(
    app: Flask, upstream: FakeUpstream, sent: str, expected: int
) -> None:
    upstream.push_faults({"status": 429, "headers": {"Retry-After": sent}})
    response = chat(app.test_client())
    assert response.status_code == 429
    assert response.get_json()["error"]["type"] == "rate_limited"
    assert response.headers["Retry-After"] == str(expected)


def test_a_retry_after_date_is_passed_on_in_seconds(app: Flask, upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 429, "headers": {"Retry-After": email.utils.formatdate(time.time() + 40,
                                                                                           usegmt=True)}})
    response = chat(app.test_client())
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 41


def test_a_rate_limit_after_the_retries_keeps_the_upstreams_retry_after(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    app = make_app(upstream, tmp_path, LLM_MAX_RETRIES="1", LLM_RETRY_AFTER_CAP="0")  # retry without waiting
    upstream.push_faults(*[{"status": 429, "headers": {"Retry-After": "9"}}] * 2)
    try:
        response = chat(app.test_client())
        assert (response.status_code, response.headers["Retry-After"]) == (429, "9")
        assert upstream.stats()["requests"] == 2
        upstream.push_faults({"status": 429, "headers": {"Retry-After": "9"}}, {"status": 429})
        last = events(app.test_client())[-1]
        assert (last["type"], last["error_code"]) == ("error", "rate_limited")
    finally:
        close_llm_client(app)


# -- bad bodies, null content, missing choices -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["malformed", "bad_shape", "no_choices"])
def test_a_bad_body_has_one_label_streamed_or_not(app: Flask, upstream: FakeUpstream, kind: str) -> None:
    upstream.push_faults({"kind": kind}, {"kind": kind})
    response = chat(app.test_client())
    assert (response.status_code, response.get_json()["error"]["type"]) == (502, "upstream_bad_response")
    last = events(app.test_client())[-1]
    assert (last["type"], last["error_code"]) == ("error", "upstream_bad_response")


def test_a_bad_chunk_inside_a_stream_is_a_bad_response(app: Flask, upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "stream_malformed"})
    got = events(app.test_client())
    assert [e["type"] for e in got] == ["start", "content", "error"]
    assert got[-1]["error_code"] == "upstream_bad_response"


def test_null_content_with_a_finish_reason_is_an_empty_answer(app: Flask, upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "null_content"}, {"kind": "null_content"})
    response = chat(app.test_client())
    assert response.status_code == 200
    assert (response.get_json()["response"], response.get_json()["finish_reason"]) == ("", "stop")
    got = events(app.test_client())
    assert [e["type"] for e in got] == ["start", "done"]
    assert got[-1]["data"]["characters"] == 0 and got[-1]["data"]["finish_reason"] == "stop"


# -- stalls ---------------------------------------------------------------------------------------------


def test_a_stalled_stream_names_llm_timeout_when_that_ends_it(upstream: FakeUpstream, tmp_path: Path) -> None:
    app = make_app(upstream, tmp_path, LLM_TIMEOUT="0.5", LLM_ASYNC_TIMEOUT="60")
    upstream.configure(reply="one two", stream_chunk_delay=10.0)
    try:
        got = events(app.test_client())
        assert [e["type"] for e in got] == ["start", "content", "error"]
        assert got[-1]["error_code"] == "upstream_timeout"
        assert "LLM_TIMEOUT=0.5s" in got[-1]["data"] and "stalled" in got[-1]["data"]
    finally:
        close_llm_client(app)


def test_a_stalled_stream_names_llm_async_timeout_when_that_ends_it(upstream: FakeUpstream, tmp_path: Path) -> None:
    app = make_app(upstream, tmp_path, LLM_TIMEOUT="60", LLM_ASYNC_TIMEOUT="0.5")
    upstream.configure(reply="one two", stream_chunk_delay=10.0)
    try:
        got = events(app.test_client())
        assert [e["type"] for e in got] == ["start", "content", "error"]
        assert got[-1]["error_code"] == "upstream_timeout"
        assert "LLM_ASYNC_TIMEOUT=0.5s" in got[-1]["data"] and "took longer" not in got[-1]["data"]
    finally:
        close_llm_client(app)


# -- finish_reason ------------------------------------------------------------------------------------


def test_an_answer_cut_at_max_tokens_says_so(app: Flask, upstream: FakeUpstream) -> None:
    upstream.configure(finish_reason="length")
    response = chat(app.test_client(), max_tokens=3)
    assert response.status_code == 200 and response.get_json()["finish_reason"] == "length"
    done = events(app.test_client(), max_tokens=3)[-1]
    assert done["type"] == "done" and done["data"]["finish_reason"] == "length"
    upstream.configure(finish_reason="stop")
    assert chat(app.test_client()).get_json()["finish_reason"] == "stop"
    assert events(app.test_client())[-1]["data"]["finish_reason"] == "stop"
