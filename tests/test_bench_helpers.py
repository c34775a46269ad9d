"""The benches' own parts that decide what they measure: the slow streaming upstream and "the defaults"."""

from __future__ import annotations

import json
import os

import pytest
import requests

from bench._common import DefaultGunicorn, UpstreamProcess, default_env, gunicorn_defaults


@pytest.fixture(scope="module")
def stream_upstream():
    command = ["bench/stream_upstream.py", "--port", "0", "--tokens", "5", "--interval", "0"]
    with UpstreamProcess(command=command) as upstream:
        yield upstream


def _stream(session: requests.Session, base_url: str) -> list[bytes]:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with session.post(base_url + "/chat/completions", json=body, stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        return [line for line in response.iter_lines() if line]


def test_stream_upstream_streams_its_tokens_then_done_and_keeps_the_connection(stream_upstream) -> None:
    with requests.Session() as session:
        for _ in range(2):  # the second stream reuses the connection
            lines = _stream(session, stream_upstream.base_url)
            assert lines[-1] == b"data: [DONE]"
            chunks = [json.loads(line.removeprefix(b"data: ")) for line in lines[:-1]]
            texts = [c["choices"][0]["delta"].get("content") for c in chunks]
            assert texts == ["tok0", " tok1", " tok2", " tok3", " tok4", None]
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        with session.get(stream_upstream.root_url + "/_stats", timeout=10) as response:
            stats = response.json()
    assert stats["streams_completed"] >= 2
    assert stats["connections"] >= 1
    assert stats["in_flight"] == 0


def test_stream_upstream_refuses_a_bad_body_and_an_unknown_path(stream_upstream) -> None:
    with requests.post(stream_upstream.base_url + "/chat/completions", data=b"{", timeout=10) as response:
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
    with requests.get(stream_upstream.base_url + "/nope", timeout=10) as response:
        assert response.status_code == 404


def test_the_defaults_leave_out_every_configuration_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "FLOWBRIDGE_RESERVED_THREADS", "LLM_MAX_RETRIES"):
        monkeypatch.setenv(name, "3")
    env = default_env(LLM_BASE_URL="http://127.0.0.1:9/v1")
    assert env["LLM_BASE_URL"] == "http://127.0.0.1:9/v1"
    assert not {"WEB_CONCURRENCY", "GUNICORN_THREADS", "FLOWBRIDGE_RESERVED_THREADS", "LLM_MAX_RETRIES"} & set(env)
    assert env["PATH"] == os.environ["PATH"]
    server = DefaultGunicorn("http://127.0.0.1:9/v1")
    assert set(server.env) - set(os.environ) <= {"FLOWBRIDGE_BIND", "LLM_BASE_URL"}
    assert "GUNICORN_THREADS" not in server.env

    # gunicorn.conf.py read the way gunicorn reads it, whatever the shell says
    defaults = gunicorn_defaults()
    assert defaults["threads"] != 3 and defaults["workers"] >= 1
    assert defaults["work_slots"] == defaults["threads"] - defaults["reserved_threads"] - defaults["queue_depth"] > 0
    assert defaults["capacity"] == defaults["workers"] * defaults["work_slots"]
