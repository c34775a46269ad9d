"""Chat, flow and op streams through real gunicorn, read with an SSE client library (httpx-sse)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

REPLY = "The quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0",
           "FLOWBRIDGE_TASK_DB": "memory"}
    with GunicornServer(env, workers=2, threads=4, log_path=log) as server:
        yield server


@pytest.fixture
def http(served: GunicornServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def read(http: httpx.Client, method: str, url: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every event of a stream, checking the stream headers on the way."""
    with connect_sse(http, method, url, **kwargs) as source:
        response = source.response
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        return [json.loads(event.data) for event in source.iter_sse()]


def assert_protocol(events: list[dict[str, Any]]) -> None:
    """start first; exactly one done or error, last."""
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start"
    assert kinds.count("done") + kinds.count("error") == 1
    assert kinds[-1] in ("done", "error")


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"] for e in events if e["type"] == "content")


# -- chat ----------------------------------------------------------------------------------------

def test_chat_streams_content_deltas(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(reply=REPLY)
    events = read(http, "POST", "/api/chat", json={"message": "hi", "stream": True})
    assert_protocol(events)
    contents = [e for e in events if e["type"] == "content"]
    assert len(contents) > 1, "the answer arrives in pieces"
    assert text_of(events) == REPLY
    assert events[-1] == {"type": "done", "data": {"model": events[0]["data"]["model"],
                                                   "chunks": len(contents), "characters": len(REPLY),
                                                   "finish_reason": "stop"}}
    assert upstream.wait_for(lambda s: s["streams_completed"] == 1)  # counted just after the last byte


def test_chat_streams_with_the_accept_header_and_multi_turn_messages(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(reply="second answer")
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "second"}]
    events = read(http, "POST", "/api/chat", json={"messages": messages, "system_prompt": "be brief"},
                  headers={"Accept": "text/event-stream"})
    assert_protocol(events)
    assert text_of(events) == "second answer"
    sent = upstream.stats()["last_request"]["json"]
    assert sent["stream"] is True
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]


def test_a_json_client_still_gets_json(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(reply="plain")
    response = http.post("/api/chat", json={"message": "hi"})
    assert response.headers["content-type"] == "application/json"
    assert response.json()["response"] == "plain"


def test_an_upstream_failure_mid_stream_is_one_error_event(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(reply=REPLY)
    upstream.push_faults({"kind": "stream_error"})
    events = read(http, "POST", "/api/chat", json={"message": "hi", "stream": True})
    assert_protocol(events)
    assert events[-1]["type"] == "error"
    assert events[-1]["error_code"] == "upstream_unreachable"
    assert "interrupted" in events[-1]["data"]


def test_an_upstream_error_event_mid_stream_is_one_error_event(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "stream_error_event"})
    events = read(http, "POST", "/api/chat", json={"message": "hi", "stream": True})
    assert_protocol(events)
    assert events[-1]["error_code"] == "upstream_bad_response"


def test_an_upstream_that_refuses_the_stream_is_an_error_event(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 500, "body": {"error": {"message": "boom"}}})
    events = read(http, "POST", "/api/chat", json={"message": "hi", "stream": True})
    assert [e["type"] for e in events] == ["start", "error"]
    assert events[-1]["error_code"] == "upstream_error"
    assert "500" in events[-1]["data"]


def test_a_bad_stream_request_is_a_json_400_before_any_stream(http: httpx.Client) -> None:
    response = http.post("/api/chat", json={"stream": True, "temperature": 9})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert "temperature" in response.json()["error"]["message"]


def test_a_client_that_goes_away_closes_the_upstream_stream(
    served: GunicornServer, upstream: FakeUpstream
) -> None:
    upstream.configure(reply=" ".join(f"word{i}" for i in range(200)), stream_chunk_delay=0.1)
    with httpx.Client(base_url=served.url, timeout=30) as client:
        with connect_sse(client, "POST", "/api/chat", json={"message": "long", "stream": True}) as source:
            seen = []
            for event in source.iter_sse():
                seen.append(json.loads(event.data)["type"])
                if seen.count("content") == 2:
                    break
    # The client is gone: the server notices, closes the upstream response, and the fake counts it.
    assert upstream.wait_for(lambda s: s["streams_closed_early"] >= 1, timeout=10)
    assert upstream.stats()["streams_completed"] == 0


# -- flows and ops -------------------------------------------------------------------------------

def test_a_stream_flow_streams_its_answer(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(reply=REPLY)
    events = read(http, "POST", "/api/flows/stream_chat", json={"inputs": {"query": "hi"}})
    assert_protocol(events)
    assert text_of(events) == REPLY
    assert events[-1]["type"] == "done"
    assert events[-1]["data"]["answer"] == REPLY
    assert events[-1]["data"]["success"] is True


def test_a_stream_flow_answers_json_to_a_json_only_client(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(reply=REPLY)
    response = http.post("/api/flows/stream_chat", json={"inputs": {"query": "hi"}},
                         headers={"Accept": "application/json"})
    assert response.headers["content-type"] == "application/json"
    assert response.json()["answer"] == REPLY


def test_a_stream_flow_whose_upstream_fails_ends_with_an_error(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "stream_error"})
    events = read(http, "POST", "/api/flows/stream_chat", json={"inputs": {"query": "hi"}})
    assert_protocol(events)
    assert events[-1]["type"] == "error"


def test_an_op_streams_progress_on_request(http: httpx.Client, upstream: FakeUpstream) -> None:
    documents = [f"document number {i}" for i in range(5)]
    op = "index_documents"
    with httpx.Client(base_url=http.base_url, timeout=30) as client:
        ops = client.get("/api/ops").json()["ops"]
        assert any(o["name"] == op for o in ops)
    events = read(http, "POST", f"/api/ops/{op}", json={"inputs": {"documents": documents}},
                  headers={"Accept": "text/event-stream"})
    assert_protocol(events)
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert progress and progress[-1]["current"] == 5 and progress[-1]["total"] == 5
    assert progress[-1]["percentage"] == 100
    assert events[-1]["data"]["outputs"] == {f"{op}_result": 5}


def test_an_op_that_rejects_its_input_ends_with_op_failed(http: httpx.Client, upstream: FakeUpstream) -> None:
    events = read(http, "POST", "/api/ops/index_documents", json={"inputs": {"documents": [""]}},
                  headers={"Accept": "text/event-stream"})
    assert [e["type"] for e in events] == ["start", "error"]
    assert events[-1]["error_code"] == "op_failed"
    assert "documents[0]" in events[-1]["data"]


def test_an_unknown_flow_is_a_json_404(http: httpx.Client) -> None:
    response = http.post("/api/flows/nope", json={"inputs": {}}, headers={"Accept": "text/event-stream"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
