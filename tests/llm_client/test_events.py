"""``llm_client.events``: ``iter_events``, ``EventStream`` and ``FlowbridgeClient`` against real gunicorn.

The streams come from ``tests/webapp/stream_test_app.py`` (known sequences, hand-cut bytes, stand-ins
for the API's paths that echo the request) and, at the end, from the real routes of ``wsgi:app``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from llm_client import (
    EventStream,
    FlowbridgeAPIError,
    FlowbridgeClient,
    LLMConnectionError,
    LLMError,
    StreamError,
    StreamEvent,
    iter_events,
)
from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer, free_port
from tests.webapp import stream_test_app
from tests.webapp.stream_test_app import SEQUENCES, SPLIT_TEXT, wait_for_marker

SECRET = "sk-test-secret-key-123456"


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, markers: Path,
           _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with stream_test_app.server(_upstream_server.base_url, markers, log) as server:
        yield server


@pytest.fixture
def fake(served: GunicornServer) -> Iterator[FlowbridgeClient]:
    """A client whose paths land on the echoing stand-ins of the test app."""
    with FlowbridgeClient(served.url + "/_test/fake", timeout=10) as client:
        yield client


def get_stream(served: GunicornServer, path: str) -> requests.Response:
    response = requests.get(served.url + path, stream=True, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


def as_dicts(events: list[StreamEvent]) -> list[dict[str, Any]]:
    return [event.raw for event in events]


# -- iter_events -----------------------------------------------------------------------------------

def test_iter_events_yields_a_known_sequence_and_closes_the_response(served: GunicornServer) -> None:
    response = get_stream(served, "/_test/events/basic")
    events = list(iter_events(response))
    assert as_dicts(events) == SEQUENCES["basic"]
    assert [e.type for e in events] == ["start", "progress", "content", "content", "content", "progress", "done"]
    assert events[1] == StreamEvent("progress", {"current": 1, "total": 2, "percentage": 50, "message": "first"})
    assert events[-1].terminal and not events[0].terminal
    assert response.raw.closed


def test_frames_split_across_chunks_and_heartbeats(served: GunicornServer) -> None:
    chunks = list(get_stream(served, "/_test/raw/split").iter_content(chunk_size=None))
    assert len(chunks) >= 6, "the server really sent the frames in pieces"
    assert b": keep-alive" in b"".join(chunks)
    events = list(iter_events(get_stream(served, "/_test/raw/split")))
    assert [(e.type, e.data) for e in events] == [("start", {"raw": True}), ("content", SPLIT_TEXT),
                                                  ("done", {"n": 3})]


def test_multi_line_data_crlf_comments_and_other_fields(served: GunicornServer) -> None:
    events = list(iter_events(get_stream(served, "/_test/raw/multiline")))
    assert [(e.type, e.data) for e in events] == [
        ("start", {"multi": True}), ("content", "line one"), ("content", "no space after the colon"),
        ("done", {"multi": True}),
    ]


def test_real_heartbeats_of_a_silent_stream_are_skipped(served: GunicornServer) -> None:
    assert b": keep-alive" in get_stream(served, "/_test/heartbeat").content
    events = list(iter_events(get_stream(served, "/_test/heartbeat")))
    assert [(e.type, e.data) for e in events] == [("start", {}), ("content", "after the silence"), ("done", {})]


def test_an_error_event_keeps_its_code(served: GunicornServer) -> None:
    events = list(iter_events(get_stream(served, "/_test/events/error")))
    assert events[-1] == StreamEvent("error", "the model went away", "upstream_error")
    assert events[-1].raw == SEQUENCES["error"][-1]


def test_stopping_iter_events_closes_the_connection_and_the_server_stops(
        served: GunicornServer, markers: Path) -> None:
    marker = uuid.uuid4().hex
    response = get_stream(served, f"/_test/slow?id={marker}")
    events = iter_events(response)
    assert next(events).type == "start"
    assert next(events).type == "content"
    events.close()
    assert response.raw.closed
    assert wait_for_marker(markers, marker), "the server's generator never ran its finally"


def test_a_frame_that_is_not_an_event_is_a_stream_error(served: GunicornServer) -> None:
    with pytest.raises(StreamError) as info:
        list(iter_events(get_stream(served, "/_test/raw/not_json")))
    assert info.value.error_code == "bad_event" and "not JSON" in str(info.value)


# -- EventStream -----------------------------------------------------------------------------------

def test_event_stream_text_result_and_final(served: GunicornServer) -> None:
    stream = EventStream(get_stream(served, "/_test/events/basic"), "GET basic")
    first = next(stream)
    assert first.type == "start"
    assert stream.text() == "Hello, wörld ✓"  # includes content read before and after the call
    assert stream.result() == {"processed": 2} == stream.final
    assert stream.closed and stream.terminal is not None and stream.terminal.type == "done"
    assert list(stream) == []


def test_event_stream_with_an_error_event(served: GunicornServer) -> None:
    with EventStream(get_stream(served, "/_test/events/error"), "GET error") as stream:
        events = list(stream)  # iteration yields the error event, it does not raise
        assert events[-1].type == "error"
        for read in (stream.text, stream.result):
            with pytest.raises(StreamError) as info:
                read()
            assert info.value.error_code == "upstream_error"
            assert info.value.message == "the model went away"


def test_a_stream_cut_off_before_its_end_raises(served: GunicornServer) -> None:
    stream = EventStream(get_stream(served, "/_test/raw/truncated"), "GET truncated")
    assert [e.type for e in (next(stream), next(stream))] == ["start", "content"]
    with pytest.raises(StreamError) as info:
        next(stream)
    assert info.value.error_code == "incomplete_stream" and "GET truncated" in str(info.value)
    assert stream.closed


def test_closing_a_stream_from_another_thread_ends_iteration(served: GunicornServer, markers: Path) -> None:
    marker = uuid.uuid4().hex
    stream = EventStream(get_stream(served, f"/_test/slow?id={marker}"), "GET slow")
    seen: list[str] = []
    for event in stream:
        seen.append(event.type)
        if len(seen) == 3:
            threading.Thread(target=stream.close).start()
        assert len(seen) < 500, "close() did not stop the stream"
    assert seen[:3] == ["start", "content", "content"] and stream.closed
    assert wait_for_marker(markers, marker)
    with pytest.raises(StreamError) as info:
        stream.text()
    assert info.value.error_code == "closed"


# -- FlowbridgeClient: the requests it sends -----------------------------------------------------

def test_functions_and_invoke(fake: FlowbridgeClient) -> None:
    manifest = fake.functions()
    assert manifest["functions"] == [{"name": "echo", "streaming": False}]
    assert manifest["request"]["method"] == "GET" and manifest["request"]["authorization"] is None
    answer = fake.invoke("echo", text="hi", name="inputs may be called name")
    assert answer["name"] == "echo"  # the "result" of the answer
    assert answer["request"]["json"] == {"inputs": {"text": "hi", "name": "inputs may be called name"}}
    assert answer["request"]["path"] == "/_test/fake/invoke/echo"


def test_invoke_of_a_streaming_function_returns_its_done_data(fake: FlowbridgeClient) -> None:
    assert fake.invoke("streaming", n=3)["json"] == {"inputs": {"n": 3}}
    with pytest.raises(StreamError) as info:
        fake.invoke("failing")
    assert info.value.error_code == "upstream_error"


def test_stream_posts_inputs_and_asks_for_an_event_stream(fake: FlowbridgeClient) -> None:
    with fake.stream("streaming", items=[1, 2]) as stream:
        events = list(stream)
    assert [e.type for e in events] == ["start", "content", "done"]
    request = events[0].data
    assert request["method"] == "POST" and request["path"] == "/_test/fake/invoke/streaming"
    assert request["json"] == {"inputs": {"items": [1, 2]}}
    assert request["accept"] == "text/event-stream"


def test_chat_stream_bodies(fake: FlowbridgeClient) -> None:
    stream = fake.chat_stream("hi", temperature=0.2)
    assert stream.text() == "echo"
    assert stream.result()["json"] == {"message": "hi", "temperature": 0.2, "stream": True}
    messages = [{"role": "user", "content": "a"}]
    sent = fake.chat_stream(messages=messages, system_prompt="short").result()
    assert sent["json"] == {"messages": messages, "system_prompt": "short", "stream": True}
    assert sent["path"] == "/_test/fake/api/chat"
    for bad in ({}, {"message": "a", "messages": messages}):
        with pytest.raises(ValueError, match="message or messages"):
            fake.chat_stream(**bad)


def test_flow_stream_and_task_events(fake: FlowbridgeClient) -> None:
    sent = fake.flow_stream("stream_chat", query="hi").result()
    assert (sent["path"], sent["json"], sent["accept"]) == (
        "/_test/fake/api/flows/stream_chat", {"inputs": {"query": "hi"}}, "text/event-stream")
    sent = fake.task_events("task-1").result()
    assert (sent["method"], sent["path"], sent["args"]) == ("GET", "/_test/fake/api/task/events", {"taskID": "task-1"})
    with pytest.raises(StreamError, match="not an event stream") as info:
        fake.flow_stream("not_streaming")
    assert info.value.error_code == "not_a_stream"


def test_the_api_key_is_sent_as_a_bearer_token_and_never_shown(served: GunicornServer) -> None:
    with FlowbridgeClient(served.url + "/_test/fake", api_key=SECRET) as client:
        assert client.invoke("echo")["request"]["authorization"] == f"Bearer {SECRET}"
        assert client.stream("streaming").result()["authorization"] == f"Bearer {SECRET}"
        assert SECRET not in repr(client) and "api_key=***" in repr(client)
        with pytest.raises(FlowbridgeAPIError) as info:
            client.invoke("missing")
        assert SECRET not in str(info.value) and SECRET not in repr(info.value)


# -- FlowbridgeClient: errors ---------------------------------------------------------------------

def test_http_errors_raise_before_any_event(fake: FlowbridgeClient) -> None:
    with pytest.raises(FlowbridgeAPIError) as info:
        fake.stream("bad_input")
    error = info.value
    assert (error.status, error.status_code, error.type) == (400, 400, "invalid_request")
    assert error.message == "inputs.items: field required" and "inputs.items" in str(error)
    with pytest.raises(FlowbridgeAPIError) as info:
        fake.invoke("missing")
    assert (info.value.status, info.value.type) == (404, "not_found")
    with pytest.raises(FlowbridgeAPIError) as info:
        fake.stream("busy")
    assert (info.value.status, info.value.type, info.value.retry_after) == (503, "overloaded", 2.0)
    with pytest.raises(FlowbridgeAPIError) as info:
        fake.invoke("plain_text_error")
    assert (info.value.status, info.value.type, info.value.message) == (502, "http_error", "gateway exploded")
    assert isinstance(info.value, LLMError)


def test_an_unreachable_server_is_a_connection_error() -> None:
    with FlowbridgeClient(f"http://127.0.0.1:{free_port()}", api_key=SECRET, timeout=5) as client:
        with pytest.raises(LLMConnectionError) as info:
            client.stream("anything")
    assert SECRET not in str(info.value)


def test_a_closed_client_refuses_new_requests(served: GunicornServer) -> None:
    client = FlowbridgeClient(served.url + "/_test/fake")
    client.functions()
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.functions()


# -- against the real routes of wsgi:app ------------------------------------------------------------

REPLY = "A real answer, streamed in several pieces"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    folder = tmp_path_factory.mktemp("real")
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0",
           "FLOWBRIDGE_TASK_DB": str(folder / "tasks.db")}  # shared by both workers
    with GunicornServer(env, workers=2, threads=4, log_path=folder / "gunicorn.log") as server:
        yield server


@pytest.fixture
def fb(real: GunicornServer) -> Iterator[FlowbridgeClient]:
    with FlowbridgeClient(real.url, timeout=30) as client:
        yield client


def test_real_chat_stream(fb: FlowbridgeClient, upstream: FakeUpstream) -> None:
    upstream.configure(reply=REPLY)
    stream = fb.chat_stream("hi")
    events = list(stream)
    assert events[0].type == "start" and events[-1].type == "done"
    assert sum(e.type == "content" for e in events) > 1
    assert stream.text() == REPLY and stream.result()["characters"] == len(REPLY)
    messages = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "two"}]
    assert fb.chat_stream(messages=messages, max_tokens=50).text() == REPLY
    assert upstream.stats()["last_request"]["json"]["max_tokens"] == 50


def test_real_chat_stream_errors(fb: FlowbridgeClient, upstream: FakeUpstream) -> None:
    with pytest.raises(FlowbridgeAPIError) as info:
        fb.chat_stream(messages=[])
    assert info.value.status == 400 and "messages" in info.value.message
    upstream.push_faults({"kind": "stream_error"})
    with pytest.raises(StreamError) as failed:
        fb.chat_stream("hi").text()
    assert failed.value.error_code and failed.value.error_code != "incomplete_stream"


def test_closing_a_real_chat_stream_closes_the_upstream_stream(fb: FlowbridgeClient, upstream: FakeUpstream) -> None:
    upstream.configure(reply=" ".join(["word"] * 400), stream_chunk_delay=0.05)
    with fb.chat_stream("hi") as stream:
        assert [next(stream).type for _ in range(3)] == ["start", "content", "content"]
    assert upstream.wait_for(lambda stats: stats["streams_closed_early"] == 1, timeout=10), upstream.stats()
    assert upstream.stats()["streams_completed"] == 0


def test_real_flow_stream(fb: FlowbridgeClient, upstream: FakeUpstream) -> None:
    upstream.configure(reply=REPLY)
    stream = fb.flow_stream("stream_chat", query="hi")
    assert stream.text() == REPLY
    assert stream.result()["answer"] == REPLY
    with pytest.raises(FlowbridgeAPIError) as info:
        fb.flow_stream("no_such_flow")
    assert (info.value.status, info.value.type) == (404, "not_found")


def _start_end_schema() -> dict[str, Any]:
    """start → end, passing ``q`` through: a workflow that needs no LLM."""
    string = {"type": "string"}
    return {"nodes": [
        {"id": "start_0", "type": "start", "meta": {"position": {"x": 0, "y": 0}},
         "data": {"title": "Start", "outputs": {"type": "object", "properties": {"q": string}}}},
        {"id": "end_0", "type": "end", "meta": {"position": {"x": 0, "y": 0}},
         "data": {"title": "End", "inputs": {"type": "object", "properties": {"answer": string}},
                  "inputsValues": {"answer": {"type": "ref", "content": ["start_0", "q"]}}}},
    ], "edges": [{"sourceNodeID": "start_0", "targetNodeID": "end_0"}]}


def test_real_task_events(fb: FlowbridgeClient, real: GunicornServer) -> None:
    response = requests.post(real.url + "/api/task/run", params={"wait": 10}, timeout=30,
                             json={"schema": json.dumps(_start_end_schema()), "inputs": {"q": "hello"}})
    assert response.status_code == 200, response.text
    task_id = response.json()["taskID"]
    stream = fb.task_events(task_id)
    events = list(stream)
    assert events[0].type == "start" and events[0].data["taskID"] == task_id
    assert {e.data["nodeID"] for e in events if e.type == "progress"} == {"start_0", "end_0"}
    assert stream.result() == {"taskID": task_id, "status": "succeeded", "outputs": {"answer": "hello"}}
    with pytest.raises(FlowbridgeAPIError) as info:
        fb.task_events("no-such-task")
    assert info.value.status == 404


def test_real_functions_manifest_and_invoke(fb: FlowbridgeClient) -> None:
    manifest = {entry["name"]: entry for entry in fb.functions()["functions"]}
    assert manifest["count_to"]["streaming"] is True and manifest["word_count"]["streaming"] is False
    assert isinstance(fb.invoke("word_count", text="two words"), dict)
    assert fb.invoke("count_to", n=3, delay=0) == {"count": 3, "success": True}  # a stream, read to its end
    with pytest.raises(FlowbridgeAPIError) as info:
        fb.invoke("no_such_function")
    assert (info.value.status, info.value.type) == (404, "not_found")
    with pytest.raises(FlowbridgeAPIError) as info:
        fb.stream("count_to", n=0)
    assert info.value.status == 400 and "n" in info.value.message


def test_real_streaming_functions(fb: FlowbridgeClient, upstream: FakeUpstream) -> None:
    events = list(fb.stream("count_to", n=5, delay=0))
    assert [e.type for e in events] == ["start", *["progress"] * 5, "done"]
    assert [e.data["percentage"] for e in events if e.type == "progress"] == [20, 40, 60, 80, 100]
    stream = fb.stream("batch_process", items=["a b", 3], delay=0)
    results = [e.data["result"] for e in stream if e.type == "progress"]
    assert results == [{"upper": "A B", "length": 3, "words": 2}, {"value": 3, "square": 9}]
    assert stream.result()["processed"] == 2
    upstream.configure(reply=REPLY)
    assert fb.stream("chat_stream", message="hi").text() == REPLY


def test_closing_a_real_function_stream_closes_the_upstream_stream(
        fb: FlowbridgeClient, upstream: FakeUpstream) -> None:
    upstream.configure(reply=" ".join(["word"] * 400), stream_chunk_delay=0.05)
    stream = fb.stream("chat_stream", message="hi")
    assert [next(stream).type for _ in range(3)] == ["start", "content", "content"]
    stream.close()
    assert upstream.wait_for(lambda stats: stats["streams_closed_early"] == 1, timeout=10), upstream.stats()
