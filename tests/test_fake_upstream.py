"""The fake upstream itself, driven with plain ``requests`` and ``http.client``."""

from __future__ import annotations

import http.client
import json
import math
import re
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 10


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def chat(session: requests.Session, up: FakeUpstream, content: str = "hello world", **body: Any) -> requests.Response:
    payload = {"model": "m", "messages": [{"role": "user", "content": content}], **body}
    return session.post(f"{up.base_url}/chat/completions", json=payload, timeout=TIMEOUT,
                        stream=bool(body.get("stream")))


def sse_data(resp: requests.Response) -> list[str]:
    """The ``data:`` payloads of an SSE response, in order."""
    return [line[len("data: "):] for line in resp.iter_lines(decode_unicode=True) if line.startswith("data: ")]


def control_url(up: FakeUpstream, name: str) -> str:
    return f"http://127.0.0.1:{up.port}/_control/{name}"


# -- endpoints ------------------------------------------------------------------------------


def test_base_url_and_models(upstream: FakeUpstream, session: requests.Session) -> None:
    assert upstream.base_url == f"http://127.0.0.1:{upstream.port}/v1"
    r = session.get(f"{upstream.base_url}/models", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json()["object"] == "list" and r.json()["data"][0] == {"id": "fake-model", "object": "model",
                                                                    "owned_by": "fake"}


def test_chat_echoes_the_last_user_message(upstream: FakeUpstream, session: requests.Session) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"}, {"role": "user", "content": "hello  world"}]
    r = session.post(f"{upstream.base_url}/chat/completions", json={"messages": messages}, timeout=TIMEOUT)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(r.content)
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "fake-model" and body["id"]
    assert isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "echo: hello  world"},
                                "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}


def test_configured_reply_and_model(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.configure(reply="fixed answer", model="other")
    body = chat(session, upstream).json()
    assert body["choices"][0]["message"]["content"] == "fixed answer" and body["model"] == "other"
    assert session.get(f"{upstream.base_url}/models", timeout=TIMEOUT).json()["data"][0]["id"] == "other"


def test_content_parts_are_understood(upstream: FakeUpstream, session: requests.Session) -> None:
    r = chat(session, upstream, content=[{"type": "text", "text": "from"}, {"type": "text", "text": "parts"}])
    assert r.json()["choices"][0]["message"]["content"] == "echo: from parts"


@pytest.mark.parametrize("body", [{}, {"messages": []}, {"messages": "hi"}, {"messages": [{"content": "x"}]}, [1]])
def test_bad_chat_requests_get_400(upstream: FakeUpstream, session: requests.Session, body: Any) -> None:
    r = session.post(f"{upstream.base_url}/chat/completions", json=body, timeout=TIMEOUT)
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    assert upstream.stats()["requests"] == 1


def test_invalid_json_gets_400(upstream: FakeUpstream, session: requests.Session) -> None:
    r = session.post(f"{upstream.base_url}/chat/completions", data=b"{nope", timeout=TIMEOUT,
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert upstream.stats()["last_request"]["json"] is None


def test_unknown_path_and_wrong_method(upstream: FakeUpstream, session: requests.Session) -> None:
    r = session.get(f"{upstream.base_url}/nope", timeout=TIMEOUT)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    assert session.get(f"{upstream.base_url}/chat/completions", timeout=TIMEOUT).status_code == 405
    assert upstream.stats()["by_path"] == {"/v1/nope": 1, "/v1/chat/completions": 1}


def test_embeddings_are_deterministic_unit_vectors(upstream: FakeUpstream, session: requests.Session) -> None:
    url = f"{upstream.base_url}/embeddings"
    one = session.post(url, json={"input": "alpha", "model": "e"}, timeout=TIMEOUT).json()
    many = session.post(url, json={"input": ["beta", "alpha"]}, timeout=TIMEOUT).json()
    assert one["object"] == "list" and one["usage"] == {"prompt_tokens": 1, "total_tokens": 1}
    vec = one["data"][0]["embedding"]
    assert len(vec) == 8 and math.isclose(math.fsum(v * v for v in vec), 1.0)
    assert [d["index"] for d in many["data"]] == [0, 1]
    assert many["data"][1]["embedding"] == vec and many["data"][0]["embedding"] != vec
    upstream.configure(embedding_dim=32)
    assert len(session.post(url, json={"input": "alpha"}, timeout=TIMEOUT).json()["data"][0]["embedding"]) == 32
    assert session.post(url, json={"input": [1, 2]}, timeout=TIMEOUT).status_code == 400


# -- connections and concurrency ----------------------------------------------------------------


def test_a_session_reuses_one_connection(upstream: FakeUpstream, session: requests.Session) -> None:
    assert chat(session, upstream).status_code == 200
    assert chat(session, upstream).status_code == 200
    # the server counts a request done just after its last byte is written
    assert upstream.wait_for(lambda s: s["in_flight"] == 0)
    stats = upstream.stats()
    assert stats["connections"] == 1 and stats["requests"] == 2


def test_http_client_keep_alive_across_plain_and_streamed_replies(upstream: FakeUpstream) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=TIMEOUT)
    try:
        for stream in (False, True, False):
            body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": stream})
            conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == 200 and not resp.will_close
            assert (resp.getheader("Transfer-Encoding") == "chunked") is stream
            assert data.endswith(b"data: [DONE]\n\n") if stream else json.loads(data)["object"] == "chat.completion"
    finally:
        conn.close()
    assert upstream.stats()["connections"] == 1


def test_max_concurrency_counts_overlapping_requests(upstream: FakeUpstream) -> None:
    upstream.configure(delay=1.0)
    codes: list[int] = []

    def call() -> None:
        with requests.Session() as s:
            codes.append(chat(s, upstream).status_code)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert codes == [200] * 5
    assert upstream.wait_for(lambda s: s["in_flight"] == 0)
    stats = upstream.stats()
    assert stats["max_concurrency"] == 5 and stats["connections"] == 5


def test_request_log(upstream: FakeUpstream, session: requests.Session) -> None:
    chat(session, upstream, "x", temperature=0.5)
    last = upstream.stats()["last_request"]
    assert last["path"] == "/v1/chat/completions" and last["method"] == "POST"
    assert last["json"]["temperature"] == 0.5
    assert {k.lower(): v for k, v in last["headers"].items()}["content-type"] == "application/json"
    for _ in range(204):
        session.get(f"{upstream.base_url}/models", timeout=TIMEOUT)
    stats = upstream.stats()
    assert stats["requests"] == 205 and len(stats["requests_log"]) == 200
    assert stats["requests_log"][-1] == stats["last_request"] and stats["last_request"]["json"] is None


# -- faults ----------------------------------------------------------------------------------


def test_status_faults_are_served_in_order(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.push_faults({"status": 429, "headers": {"Retry-After": "1"}},
                         {"status": 500, "body": {"error": {"message": "custom"}}})
    first, second, third = (chat(session, upstream) for _ in range(3))
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    assert first.json() == {"error": {"message": "injected 429", "type": "fake"}}
    assert second.status_code == 500 and second.json() == {"error": {"message": "custom"}}
    assert third.status_code == 200
    stats = upstream.stats()
    assert stats["connections"] == 1 and stats["requests"] == 3 and stats["faults_pending"] == 0


def test_reset_fault(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.push_faults({"kind": "reset"}, {"kind": "reset"})
    with pytest.raises(requests.ConnectionError):
        chat(session, upstream)
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/v1/models")
        with pytest.raises(ConnectionError):  # ConnectionResetError or RemoteDisconnected
            conn.getresponse()
    finally:
        conn.close()
    assert chat(session, upstream).status_code == 200
    assert upstream.stats()["requests"] == 3


def test_malformed_and_bad_shape_faults(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.push_faults({"kind": "malformed"}, {"kind": "bad_shape"})
    malformed = chat(session, upstream)
    assert malformed.status_code == 200 and malformed.text == "not json"
    with pytest.raises(requests.JSONDecodeError):
        malformed.json()
    bad_shape = chat(session, upstream)
    assert bad_shape.status_code == 200 and bad_shape.json() == {"foo": 1}


def test_trickle_fault_sends_a_byte_at_a_time_until_the_client_closes(
    upstream: FakeUpstream, session: requests.Session
) -> None:
    upstream.push_faults({"kind": "trickle", "interval": 0.02})
    response = chat(session, upstream, stream=True)  # stream=True here only so the body is read by hand
    assert response.status_code == 200
    body = response.iter_content(chunk_size=1)
    assert [next(body) for _ in range(3)] == [b" "] * 3
    assert upstream.stats()["trickles_closed"] == 0
    response.close()
    assert upstream.wait_for(lambda s: s["trickles_closed"] == 1, timeout=10)


def test_answer_shape_faults_and_finish_reason(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.push_faults({"kind": "null_content"}, {"kind": "no_choices"}, {"kind": "no_choices"},
                         {"kind": "stream_malformed"})
    assert chat(session, upstream).json()["choices"][0]["message"] == {"role": "assistant", "content": None}
    assert "choices" not in chat(session, upstream).json()
    chunks = sse_data(chat(session, upstream, stream=True))
    assert len(chunks) == 1 and "choices" not in json.loads(chunks[0])
    good, bad = sse_data(chat(session, upstream, stream=True))
    assert json.loads(good)["choices"][0]["delta"]["content"] == "echo:"
    with pytest.raises(ValueError):
        json.loads(bad)
    upstream.configure(finish_reason="length")
    assert chat(session, upstream).json()["choices"][0]["finish_reason"] == "length"
    assert json.loads(sse_data(chat(session, upstream, stream=True))[-2])["choices"][0]["finish_reason"] == "length"


def test_hang_fault_triggers_a_read_timeout(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.push_faults({"kind": "hang", "seconds": 3})
    with pytest.raises(requests.ReadTimeout):
        session.post(f"{upstream.base_url}/chat/completions", timeout=(TIMEOUT, 0.2),
                     json={"messages": [{"role": "user", "content": "x"}]})
    assert chat(session, upstream).json()["choices"][0]["message"]["content"] == "echo: hello world"


def test_stop_drops_a_hanging_request() -> None:
    errors: list[Exception] = []

    def call() -> None:
        try:
            chat(s, up)
        except requests.RequestException as exc:
            errors.append(exc)

    with FakeUpstream() as up, requests.Session() as s:
        up.push_faults({"kind": "hang", "seconds": 600})
        worker = threading.Thread(target=call)
        worker.start()
        assert up.wait_for(lambda st: st["in_flight"] == 1)
        up.stop()
        worker.join(TIMEOUT)
        assert not worker.is_alive() and len(errors) == 1


def test_bad_faults_are_rejected(upstream: FakeUpstream) -> None:
    with pytest.raises(ValueError):
        upstream.push_faults({"kind": "explode"})
    with pytest.raises(ValueError):
        upstream.push_faults({"status": "500"})
    assert upstream.stats()["faults_pending"] == 0


# -- streaming -------------------------------------------------------------------------------


def test_stream_joins_to_the_reply(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.configure(reply="one two  three four")
    with chat(session, upstream, stream=True) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        data = sse_data(r)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant" and deltas[-1] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    pieces = [d["content"] for d in deltas[:-1]]
    assert pieces == ["one", " two", "  three", " four"] and "".join(pieces) == "one two  three four"
    assert upstream.wait_for(lambda s: s["streams_started"] == 1 and s["streams_completed"] == 1)


def test_stream_closed_early_by_the_client(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.configure(reply=" ".join(f"w{i}" for i in range(300)), stream_chunk_delay=0.01)
    with chat(session, upstream, stream=True) as r:
        first = next(line for line in r.iter_lines() if line)
        assert json.loads(first[len(b"data: "):])["choices"][0]["delta"]["content"] == "w0"
    assert upstream.wait_for(lambda s: s["streams_closed_early"] == 1 and s["in_flight"] == 0)
    stats = upstream.stats()
    assert stats["streams_started"] == 1 and stats["streams_completed"] == 0


def test_stream_error_fault_cuts_the_body(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.configure(reply="a b c d e f")
    upstream.push_faults({"kind": "stream_error"})
    got: list[str] = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        with chat(session, upstream, stream=True) as r:
            for line in r.iter_lines(decode_unicode=True):
                if line:
                    got.append(line)
    assert len(got) == 2 and "[DONE]" not in got[-1]
    assert chat(session, upstream).status_code == 200  # the server carries on
    assert upstream.stats()["streams_completed"] == 0


def test_stream_error_event_fault(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.configure(reply="a b c")
    upstream.push_faults({"kind": "stream_error_event"})
    with chat(session, upstream, stream=True) as r:
        data = sse_data(r)
    assert len(data) == 2 and json.loads(data[0])["choices"][0]["delta"]["content"] == "a"
    assert json.loads(data[1]) == {"error": {"message": "boom", "type": "server_error"}}
    stats = upstream.stats()
    assert stats["connections"] == 1 and stats["streams_completed"] == 0


def test_status_fault_on_a_stream_request(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.push_faults({"status": 503})
    r = chat(session, upstream, stream=True)
    assert r.status_code == 503 and r.headers["Content-Type"] == "application/json"
    assert upstream.stats()["streams_started"] == 0


# -- steering ----------------------------------------------------------------------------------


def test_configure_rejects_unknown_settings(upstream: FakeUpstream) -> None:
    with pytest.raises(TypeError):
        upstream.configure(dealy=1)
    with pytest.raises(TypeError):
        upstream.configure(embedding_dim="8")
    with pytest.raises(ValueError):
        upstream.configure(delay=-1)


def test_reset_restores_defaults(upstream: FakeUpstream, session: requests.Session) -> None:
    upstream.configure(reply="x", model="y")
    upstream.push_faults({"status": 500})
    chat(session, upstream)
    upstream.reset()
    assert upstream.config() == {"delay": 0.0, "reply": None, "stream_chunk_delay": 0.0, "model": "fake-model",
                                 "embedding_dim": 8, "finish_reason": "stop"}
    stats = upstream.stats()
    assert (stats["requests"], stats["connections"], stats["last_request"], stats["requests_log"]) == (0, 0, None, [])
    assert chat(session, upstream).json()["choices"][0]["message"]["content"] == "echo: hello world"


def test_wait_for_gives_up(upstream: FakeUpstream) -> None:
    assert upstream.wait_for(lambda s: s["requests"] == 0, timeout=0)
    assert not upstream.wait_for(lambda s: s["requests"] == 1, timeout=0.05)


def test_control_endpoints(upstream: FakeUpstream, session: requests.Session) -> None:
    r = session.post(control_url(upstream, "configure"), json={"reply": "steered", "delay": 0}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["config"]["reply"] == "steered"
    r = session.post(control_url(upstream, "faults"), json=[{"status": 418}], timeout=TIMEOUT)
    assert r.json() == {"ok": True, "faults_pending": 1}
    assert chat(session, upstream).status_code == 418
    assert chat(session, upstream).json()["choices"][0]["message"]["content"] == "steered"
    stats = session.get(control_url(upstream, "stats"), timeout=TIMEOUT).json()
    assert stats["requests"] == 2 and stats["by_path"] == {"/v1/chat/completions": 2}
    assert session.post(control_url(upstream, "reset"), timeout=TIMEOUT).json() == {"ok": True}
    assert upstream.config()["reply"] is None and upstream.stats()["requests"] == 0
    assert session.post(control_url(upstream, "configure"), json={"nope": 1}, timeout=TIMEOUT).status_code == 400
    assert session.post(control_url(upstream, "faults"), json={"status": 500}, timeout=TIMEOUT).status_code == 400
    assert session.get(control_url(upstream, "nope"), timeout=TIMEOUT).status_code == 404
    assert upstream.stats()["requests"] == 0


def test_lifecycle() -> None:
    up = FakeUpstream()
    with pytest.raises(RuntimeError):
        up.port
    assert up.start() is up
    try:
        with pytest.raises(RuntimeError):
            up.start()
        assert requests.get(f"{up.base_url}/models", timeout=TIMEOUT).status_code == 200
    finally:
        up.stop()
    up.stop()  # idempotent


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_standalone_main(signum: int) -> None:
    cmd = [sys.executable, "-m", "tests.fake_upstream", "--port", "0", "--delay", "0.1", "--reply", "hi there"]
    with subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert select.select([proc.stdout], [], [], 30)[0], "no READY line"
            line = proc.stdout.readline().strip()  # type: ignore[union-attr]
            assert re.fullmatch(r"READY http://127\.0\.0\.1:\d+/v1", line), line
            base_url = line.split()[1]
            with requests.Session() as s:
                r = s.post(f"{base_url}/chat/completions", json={"messages": [{"role": "user", "content": "x"}]},
                           timeout=TIMEOUT)
                assert r.json()["choices"][0]["message"]["content"] == "hi there"
                config = s.post(base_url.replace("/v1", "/_control/configure"), json={}, timeout=TIMEOUT).json()
                assert config["config"]["delay"] == 0.1
            proc.send_signal(signum)
            assert proc.wait(timeout=TIMEOUT) == 0
            assert proc.stdout.read() == ""  # type: ignore[union-attr]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
