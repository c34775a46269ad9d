"""/functions and /invoke through real gunicorn (2 workers), streams read with httpx-sse.

The server runs ``tests.webapp.streaming_app:app``: the real ``create_app()`` plus
test-only generator functions whose ``finally`` writes a marker file, so closing
on disconnect is observed through the server, without mocks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

REPLY = "Streams arrive in pieces and end with exactly one done"


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream,
           markers: Path) -> Iterator[GunicornServer]:
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": "memory",
           "FLOWBRIDGE_TEST_MARKER_DIR": str(markers)}
    with GunicornServer(env, workers=2, threads=4, app="tests.webapp.streaming_app:app", log_path=log) as server:
        yield server


@pytest.fixture
def http(served: GunicornServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def invoke(http: httpx.Client, name: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every event of ``POST /invoke/<name>``, checking the stream's headers and protocol."""
    with connect_sse(http, "POST", f"/invoke/{name}", **kwargs) as source:
        response = source.response
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        events = [json.loads(event.data) for event in source.iter_sse()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start"
    assert kinds.count("done") + kinds.count("error") == 1 and kinds[-1] in ("done", "error")
    return events


def progress_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == "progress"]


def assert_counts_to_100(events: list[dict[str, Any]]) -> None:
    progress = progress_of(events)
    assert progress, "at least one progress event"
    assert [p["current"] for p in progress] == sorted(p["current"] for p in progress)
    for p in progress:
        assert p["percentage"] == int(100 * p["current"] / p["total"])
    assert progress[-1]["current"] == progress[-1]["total"] and progress[-1]["percentage"] == 100
    assert events[-1]["type"] == "done"


def wait_for_file(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return path.exists()


def read_then_leave(served: GunicornServer, name: str, inputs: dict[str, Any], kind: str, count: int = 2) -> None:
    """Read ``count`` events of type ``kind``, then close the connection."""
    with httpx.Client(base_url=served.url, timeout=30) as client:
        with connect_sse(client, "POST", f"/invoke/{name}", json={"inputs": inputs}) as source:
            seen = 0
            for event in source.iter_sse():
                seen += json.loads(event.data)["type"] == kind
                if seen == count:
                    break
    assert seen == count


# -- the manifest --------------------------------------------------------------------------------

def test_the_manifest_lists_every_function(http: httpx.Client) -> None:
    functions = {f["name"]: f for f in http.get("/functions").json()["functions"]}
    assert {n: functions[n]["streaming"] for n in ("batch_process", "chat_stream", "count_to",
                                                   "process_text_file", "word_count")} == {
        "batch_process": True, "chat_stream": True, "count_to": True, "process_text_file": True,
        "word_count": False}
    assert functions["tick_sync"]["parameters"][0] == {"name": "name", "type": "string", "required": True,
                                                       "description": ""}


# -- every built-in streams start ... done ---------------------------------------------------------

def test_count_to_counts_to_100_percent(http: httpx.Client) -> None:
    events = invoke(http, "count_to", json={"inputs": {"n": 100, "delay": 0}})
    assert_counts_to_100(events)
    assert [p["percentage"] for p in progress_of(events)] == list(range(1, 101))
    assert events[-1]["data"] == {"count": 100, "success": True}


def test_batch_process_reports_each_item(http: httpx.Client) -> None:
    events = invoke(http, "batch_process", json={"inputs": {"items": ["a b", "cde", 4, {"k": 1}], "delay": 0.01}})
    assert_counts_to_100(events)
    assert [(p["current"], p["total"], p["percentage"]) for p in progress_of(events)] == [
        (1, 4, 25), (2, 4, 50), (3, 4, 75), (4, 4, 100)]
    assert [p["result"] for p in progress_of(events)] == [
        {"upper": "A B", "length": 3, "words": 2}, {"upper": "CDE", "length": 3, "words": 1},
        {"value": 4, "square": 16}, {"size": 1}]
    assert events[-1]["data"]["processed"] == 4


def test_process_text_file_reads_a_multipart_upload(http: httpx.Client) -> None:
    lines = [f"word{i} " * (i % 4) for i in range(1, 251)]
    text = "\n".join(lines) + "\n"
    events = invoke(http, "process_text_file", files={"file": ("big.txt", text.encode(), "text/plain")},
                    data={"every": "100"})
    assert_counts_to_100(events)
    assert [p["current"] for p in progress_of(events)] == [100, 200, 250]
    assert events[-1]["data"]["lines"] == 250
    assert events[-1]["data"]["words"] == len(text.split())
    assert events[-1]["data"]["characters"] == sum(len(line) for line in lines)
    assert events[-1]["data"]["blank_lines"] == sum(1 for line in lines if not line.strip())


def test_process_text_file_refuses_binary_uploads(http: httpx.Client) -> None:
    response = http.post("/invoke/process_text_file", files={"file": ("x.png", b"\x89PNG\r\n\xff", "image/png")})
    assert response.status_code == 400
    assert "inputs.file: x.png is not utf-8 text" in response.json()["error"]["message"]


def test_word_count_answers_json(http: httpx.Client) -> None:
    response = http.post("/invoke/word_count", json={"inputs": {"text": "a b a"}},
                         headers={"Accept": "text/event-stream"})
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"result": {"words": 3, "unique_words": 2, "characters": 5, "lines": 1}}


# -- chat_stream -----------------------------------------------------------------------------------

def test_chat_stream_streams_the_reply_as_content_deltas(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(reply=REPLY)
    events = invoke(http, "chat_stream", json={"inputs": {"message": "hi", "system_prompt": "be brief"}})
    contents = [e["data"] for e in events if e["type"] == "content"]
    assert len(contents) > 1, "the answer arrives in pieces"
    assert "".join(contents) == REPLY
    assert events[0]["data"]["model"]
    assert events[-1]["data"] == {"model": events[0]["data"]["model"], "chunks": len(contents),
                                  "characters": len(REPLY), "finish_reason": "stop"}
    sent = upstream.stats()["last_request"]["json"]
    assert sent["stream"] is True and [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert upstream.wait_for(lambda s: s["streams_completed"] == 1)  # counted just after the last byte


def test_an_upstream_failure_mid_stream_is_one_error_event(http: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(reply=REPLY)
    upstream.push_faults({"kind": "stream_error"})
    events = invoke(http, "chat_stream", json={"inputs": {"message": "hi"}})
    assert [e["type"] for e in events][-1] == "error"
    assert [e["type"] for e in events].count("error") == 1
    assert events[-1]["error_code"] == "upstream_unreachable"
    assert events[-1]["data"]


def test_a_client_that_leaves_chat_stream_closes_the_upstream_stream(
    served: GunicornServer, upstream: FakeUpstream
) -> None:
    upstream.configure(reply=" ".join(f"word{i}" for i in range(100)), stream_chunk_delay=0.2)
    read_then_leave(served, "chat_stream", {"message": "long"}, "content")
    assert upstream.wait_for(lambda s: s["streams_closed_early"] >= 1, timeout=10)
    assert upstream.stats()["streams_completed"] == 0


# -- generators are closed when the client leaves ------------------------------------------------------

@pytest.mark.parametrize("name", ["tick_sync", "tick_async"])
def test_a_generator_finally_runs_when_the_client_leaves(served: GunicornServer, markers: Path, name: str) -> None:
    marker = markers / f"{name.replace('_', '-')}.closed"
    read_then_leave(served, name, {"name": marker.stem, "delay": 0.05}, "progress")
    assert wait_for_file(marker), f"{name}'s finally did not run after the client left"


def test_errors_mid_stream_are_one_error_event(http: httpx.Client) -> None:
    events = invoke(http, "fail_after", json={"inputs": {"steps": 2}})
    assert [e["type"] for e in events] == ["start", "progress", "progress", "error"]
    assert events[-1] == {"type": "error", "data": "fail_after failed: cannot go on after step 2",
                          "error_code": "function_failed"}
    events = invoke(http, "fail_after", json={"inputs": {"steps": 1, "error": "bug"}})
    assert events[-1]["error_code"] == "internal_error" and "secret" not in events[-1]["data"]


# -- refusals ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "kwargs", "status", "named"), [
    ("batch_process", {"json": {"inputs": {"items": "abc"}}}, 400, "inputs.items: expected an array, got string"),
    ("count_to", {"json": {"inputs": {"n": 20000}}}, 400, "inputs.n: must be <= 10000"),
    ("count_to", {"json": {"inputs": {"m": 1}}}, 400, "inputs.m: unknown input"),
    ("chat_stream", {"json": {"inputs": {}}}, 400, "inputs.message: give exactly one"),
    ("tick_sync", {"json": {"inputs": {"name": "../x"}}}, 400, "inputs.name: use 1-40"),
    ("count_to", {"content": b"n=1", "headers": {"Content-Type": "text/plain"}}, 415, "multipart/form-data"),
    ("nope", {"json": {"inputs": {}}}, 404, "no function named 'nope'"),
])
def test_refusals_are_json_errors_before_any_stream(
    http: httpx.Client, name: str, kwargs: dict[str, Any], status: int, named: str
) -> None:
    response = http.post(f"/invoke/{name}", **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert named in response.json()["error"]["message"]
