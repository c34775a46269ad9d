"""The sync core of LLMClient against a real fake upstream over HTTP."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
import requests

from llm_client import (
    LLMClient,
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
)
from tests.fake_upstream import FakeUpstream

SECRET = "sk-test-secret-123456789"


def make(upstream: FakeUpstream, **kw: object) -> LLMClient:
    kw.setdefault("max_retries", 2)
    return LLMClient(upstream.base_url, api_key=SECRET, model="m1", env={"LLM_RETRY_INITIAL_DELAY": "0.01"}, **kw)


# -- settings -----------------------------------------------------------------------------


def test_settings_come_from_the_environment() -> None:
    env = {"LLM_BASE_URL": "http://127.0.0.1:9/v1/", "LLM_MODEL": "m", "LLM_TIMEOUT": "7",
           "LLM_CONNECT_TIMEOUT": "2", "LLM_MAX_RETRIES": "4", "LLM_API_KEY": SECRET}
    with LLMClient(env=env) as client:
        s = client.settings
        assert (s.base_url, s.model, s.timeout, s.connect_timeout, s.max_retries) == (
            "http://127.0.0.1:9/v1", "m", 7.0, 2.0, 4)
        assert s.api_key is not None and s.api_key.get_secret_value() == SECRET


def test_openai_variables_are_the_fallback_and_arguments_win() -> None:
    env = {"OPENAI_BASE_URL": "https://api.example.test/v1", "OPENAI_API_KEY": "k"}
    with LLMClient(env=env) as client:
        assert client.base_url == "https://api.example.test/v1"
    with LLMClient("http://127.0.0.1:1/v1", model="x", timeout=3, env=env) as client:
        assert (client.base_url, client.model, client.settings.timeout) == ("http://127.0.0.1:1/v1", "x", 3.0)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LLM_TIMEOUT": "soon"}, "LLM_TIMEOUT"),
        ({"LLM_CONNECT_TIMEOUT": "-1"}, "LLM_CONNECT_TIMEOUT"),
        ({"LLM_MAX_RETRIES": "many"}, "LLM_MAX_RETRIES"),
        ({"LLM_BASE_URL": "ftp://x"}, "LLM_BASE_URL"),
        ({"OPENAI_BASE_URL": "nope"}, "OPENAI_BASE_URL"),
        ({"LLM_ASYNC_WORKERS": "zero"}, "LLM_ASYNC_WORKERS"),
        ({"LLM_ASYNC_TIMEOUT": "-3"}, "LLM_ASYNC_TIMEOUT"),
    ],
)
def test_a_bad_setting_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(LLMConfigError, match=named):
        LLMClient(env=env)


def test_a_bad_argument_is_named() -> None:
    with pytest.raises(LLMConfigError, match="argument 'timeout'"):
        LLMClient(timeout=-1, env={})


def test_the_key_is_never_shown(upstream: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.push_faults({"status": 500, "body": {"error": {"message": f"bad key Bearer {SECRET}"}}},
                         {"status": 401, "body": {"error": {"message": f"Incorrect API key {SECRET}"}}})
    with make(upstream) as client:
        assert SECRET not in repr(client)
        with pytest.raises(LLMStatusError) as info:
            client.chat("hi")
    assert info.value.status_code == 401
    assert SECRET not in str(info.value) and SECRET not in info.value.body
    assert SECRET not in caplog.text
    with pytest.raises(LLMConfigError) as bad:
        LLMClient(api_key=SECRET, timeout="x", env={})  # type: ignore[arg-type]
    assert SECRET not in str(bad.value)


# -- calls ------------------------------------------------------------------------------------


def test_chat_sends_an_openai_request(upstream: FakeUpstream) -> None:
    with make(upstream) as client:
        assert client.chat("Say hi", system_prompt="Be brief", max_tokens=12) == "echo: Say hi"
    last = upstream.stats()["last_request"]
    assert last["path"] == "/v1/chat/completions"
    assert last["json"]["model"] == "m1"
    assert last["json"]["messages"] == [
        {"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hi"}]
    assert (last["json"]["temperature"], last["json"]["max_tokens"]) == (0.0, 12)
    headers = {k.lower(): v for k, v in last["headers"].items()}
    assert headers["authorization"] == f"Bearer {SECRET}"


def test_chat_with_context_and_completion_details(upstream: FakeUpstream) -> None:
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c d"}]
    with make(upstream) as client:
        assert client.chat_with_context(messages) == "echo: c d"
        assert upstream.stats()["last_request"]["json"]["temperature"] == 0.7
        result = client.chat_completion(messages, temperature=0, max_tokens=5)
    assert result.text == "echo: c d" and result.model == "fake-model" and result.finish_reason == "stop"
    assert result.usage["total_tokens"] > 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.chat_with_context([]), "non-empty list"),
        (lambda c: c.chat_with_context([{"role": "boss", "content": "x"}]), r"messages\[0\].role"),
        (lambda c: c.chat_with_context([{"role": "user"}]), r"messages\[0\].content"),
        (lambda c: c.chat("x", max_tokens=0), "max_tokens"),
        (lambda c: c.chat("x", temperature=5), "temperature"),
    ],
)
def test_bad_arguments_fail_before_sending(upstream: FakeUpstream, call, message: str) -> None:
    with make(upstream) as client, pytest.raises(ValueError, match=message):
        call(client)
    assert upstream.stats()["requests"] == 0


def test_embed(upstream: FakeUpstream) -> None:
    with make(upstream) as client:
        vectors = client.embed(["a", "b", "a"])
        single = client.embed("b")
    assert len(vectors) == 3 and len(vectors[0]) == 8
    assert vectors[0] == vectors[2] != vectors[1] and single == [vectors[1]]
    assert upstream.stats()["last_request"]["path"] == "/v1/embeddings"


def test_connections_are_reused(upstream: FakeUpstream) -> None:
    with make(upstream) as client:
        for i in range(5):
            client.chat(f"q{i}")
    assert upstream.stats()["connections"] == 1


def test_many_threads_never_overflow_a_connection_pool(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="urllib3")
    upstream.configure(delay=0.05)
    with make(upstream) as client:
        threads = [threading.Thread(target=lambda: [client.chat("x") for _ in range(3)]) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert "pool is full" not in caplog.text
    stats = upstream.stats()
    assert stats["requests"] == 48 and stats["connections"] == 16


# -- retries and errors -------------------------------------------------------------------------


def test_server_errors_are_retried(upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 500}, {"status": 503})
    with make(upstream) as client:
        assert client.chat("x") == "echo: x"
    assert upstream.stats()["requests"] == 3


@pytest.mark.parametrize("status", [408, 409, 502, 504])
def test_retryable_statuses(upstream: FakeUpstream, status: int) -> None:
    upstream.push_faults({"status": status})
    with make(upstream) as client:
        assert client.chat("x") == "echo: x"
    assert upstream.stats()["requests"] == 2


def test_client_errors_are_not_retried(upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 400, "body": {"error": {"message": "bad field"}}})
    with make(upstream) as client, pytest.raises(LLMStatusError) as info:
        client.chat("x")
    assert info.value.status_code == 400 and "bad field" in str(info.value) and "bad field" in info.value.body
    assert upstream.stats()["requests"] == 1


def test_retry_after_is_honoured(upstream: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_client")
    upstream.push_faults({"status": 429, "headers": {"Retry-After": "0.3"}})
    with make(upstream) as client:
        assert client.chat("x") == "echo: x"
    assert upstream.stats()["requests"] == 2
    assert "retrying in 0.30s" in caplog.text


def test_retry_after_is_capped(upstream: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_client")
    upstream.push_faults({"status": 503, "headers": {"Retry-After": "3600"}})
    client = LLMClient(upstream.base_url, env={"LLM_RETRY_AFTER_CAP": "0.05"})
    with client:
        assert client.chat("x") == "echo: x"
    assert "retrying in 0.05s" in caplog.text


def test_rate_limit_after_all_retries(upstream: FakeUpstream) -> None:
    upstream.push_faults(*[{"status": 429, "headers": {"retry-after-ms": "10"}}] * 3)
    with make(upstream) as client, pytest.raises(LLMRateLimitError) as info:
        client.chat("x")
    assert info.value.status_code == 429 and info.value.retry_after == pytest.approx(0.01)
    assert upstream.stats()["requests"] == 3


def test_connection_reset_is_retried(upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "reset"})
    with make(upstream) as client:
        assert client.chat("x") == "echo: x"
    assert upstream.stats()["requests"] == 2


def test_connection_errors_are_translated() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    client = LLMClient(f"http://127.0.0.1:{port}/v1", max_retries=1, env={"LLM_RETRY_INITIAL_DELAY": "0"})
    with client, pytest.raises(LLMConnectionError) as info:
        client.chat("x")
    assert not isinstance(info.value, requests.RequestException)
    assert "Connection refused" in str(info.value)


def test_read_timeout(upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "hang", "seconds": 2})
    with make(upstream, timeout=0.2, max_retries=0) as client, pytest.raises(LLMTimeoutError):
        client.chat("x")


@pytest.mark.parametrize("kind", ["malformed", "bad_shape"])
def test_malformed_answers(upstream: FakeUpstream, kind: str) -> None:
    upstream.push_faults({"kind": kind})
    with make(upstream) as client, pytest.raises(LLMResponseError):
        client.chat("x")
    assert upstream.stats()["requests"] == 1


def test_every_error_is_an_llm_error() -> None:
    for cls in (LLMConnectionError, LLMTimeoutError, LLMStatusError, LLMRateLimitError, LLMResponseError):
        assert issubclass(cls, LLMError)


# -- streaming -----------------------------------------------------------------------------------


def test_stream_yields_the_answer(upstream: FakeUpstream) -> None:
    upstream.configure(reply="one two three four")
    with make(upstream) as client:
        stream = client.chat_stream("x")
        assert upstream.stats()["requests"] == 0  # nothing sent before the first read
        parts = list(stream)
    assert "".join(parts) == "one two three four" and len(parts) > 1
    assert upstream.stats()["last_request"]["json"]["stream"] is True
    assert upstream.wait_for(lambda s: s["streams_completed"] == 1)


def test_stream_takes_a_message_list(upstream: FakeUpstream) -> None:
    with make(upstream) as client:
        text = "".join(client.chat_stream([{"role": "user", "content": "hey there"}]))
    assert text == "echo: hey there"


def test_closing_a_stream_early_closes_the_upstream_response(upstream: FakeUpstream) -> None:
    upstream.configure(reply=" ".join(f"w{i}" for i in range(200)), stream_chunk_delay=0.02)
    with make(upstream) as client:
        stream = client.chat_stream("x")
        assert next(stream) == "w0"
        stream.close()
        assert upstream.wait_for(lambda s: s["streams_closed_early"] == 1)
        assert stream.closed and list(stream) == []


def test_a_stream_failing_midway_raises_and_is_not_retried(upstream: FakeUpstream) -> None:
    upstream.configure(reply="a b c d e f")
    upstream.push_faults({"kind": "stream_error"})
    with make(upstream) as client:
        stream = client.chat_stream("x")
        got = [next(stream)]
        with pytest.raises(LLMConnectionError):
            got.extend(stream)
    assert got and upstream.stats()["requests"] == 1


def test_an_error_event_in_a_stream_raises(upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "stream_error_event"})
    with make(upstream) as client, pytest.raises(LLMResponseError, match="boom"):
        list(client.chat_stream("x"))


def test_a_stream_retries_before_its_first_chunk(upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 502})
    with make(upstream) as client:
        assert "".join(client.chat_stream("x y")) == "echo: x y"
    assert upstream.stats()["requests"] == 2


def test_ping(upstream: FakeUpstream) -> None:
    with make(upstream) as client:
        assert client.ping()
    with LLMClient("http://127.0.0.1:9/v1", env={}) as client:
        assert not client.ping(timeout=0.5)
