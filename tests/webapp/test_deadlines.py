"""The request deadline (FLOWBRIDGE_REQUEST_TIMEOUT) and the capacity guard, through the Flask app."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from async_utils import AsyncHelper
from async_utils.flask_bridge import set_deadline
from tests.fake_upstream import FakeUpstream
from tests.webapp.test_tasks_api import simple_schema
from webapp import ConfigError, create_app
from webapp.extensions import close_llm_client, close_workflow_runtime
from webapp.functions import FunctionRegistry


def make_app(upstream: FakeUpstream, tmp_path: Path, **config: Any) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                       "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"), **config})


@pytest.fixture
def app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Flask]:
    registry = FunctionRegistry()

    @registry.register
    async def nap(seconds: float = 30.0) -> str:
        await asyncio.sleep(seconds)
        return "rested"

    @registry.register
    def busy(release: bool = False) -> str:
        """A plain function: blocks until the test lets it go (or 10 s), then says which request it served."""
        if release:
            gate.set()
            return "released"
        finished = gate.wait(10)
        done.append(request.path if finished else "never released")
        return "done"

    @registry.register
    def slow_steps(steps: int = 4) -> Iterator[dict[str, Any]]:
        for i in range(steps):
            AsyncHelper.run_async_in_sync(asyncio.sleep(0.2))  # would be cut off if the deadline still held
            yield {"type": "progress", "data": {"current": i + 1, "total": steps}}

    gate, done = threading.Event(), []
    app = make_app(upstream, tmp_path, FLOWBRIDGE_REQUEST_TIMEOUT=0.5, FUNCTION_REGISTRY=registry)
    app.extensions["test_busy"] = (gate, done)
    yield app
    gate.set()
    close_workflow_runtime(app)
    close_llm_client(app)


def deadline_error(response: Any, path: str) -> None:
    assert response.status_code == 504, response.data
    assert response.json["error"] == {
        "type": "deadline_exceeded",
        "message": f"POST {path} took longer than FLOWBRIDGE_REQUEST_TIMEOUT=0.5s",
    }


@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", {"message": "slow"}),
    ("/api/ops/chat", {"inputs": {"query": "slow"}}),
    ("/api/flows/chat_summary", {"inputs": {"query": "slow"}}),
    ("/api/flows", {"flow_content": "ChatOp()", "inputs": {"query": "slow"}}),
])
def test_a_blocking_llm_endpoint_past_its_deadline_is_504(app: Flask, upstream: FakeUpstream, path: str,
                                                           body: dict[str, Any]) -> None:
    upstream.configure(delay=5.0)  # far beyond the deadline, well within LLM_TIMEOUT and LLM_ASYNC_TIMEOUT
    deadline_error(app.test_client().post(path, json=body), path)
    assert upstream.wait_for(lambda s: s["requests"] == 1)  # it did start, and was cut off


def test_a_coroutine_function_past_its_deadline_is_504(app: Flask) -> None:
    deadline_error(app.test_client().post("/invoke/nap", json={"inputs": {}}), "/invoke/nap")
    assert app.test_client().post("/invoke/nap", json={"inputs": {"seconds": 0}}).json == {"result": "rested"}


def test_a_plain_function_past_its_deadline_is_504_and_runs_on_in_its_context(app: Flask) -> None:
    """Python cannot stop a thread: the request answers 504, and the function finishes on its pool thread."""
    gate, done = app.extensions["test_busy"]
    deadline_error(app.test_client().post("/invoke/busy", json={"inputs": {}}), "/invoke/busy")
    assert done == []  # still running
    assert app.test_client().post("/invoke/busy", json={"inputs": {"release": True}}).json == {"result": "released"}
    for _ in range(500):  # bounded: 5 s
        if done:
            break
        time.sleep(0.01)
    assert done == ["/invoke/busy"]  # it ran with its request's context


def test_requests_within_the_deadline_are_untouched(app: Flask, upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.05)
    client = app.test_client()
    response = client.post("/api/chat", json={"message": "quick"})
    assert response.status_code == 200 and response.json["response"] == "echo: quick"
    assert client.get("/healthz").status_code == 200


def test_event_streams_are_exempt_once_started(app: Flask, upstream: FakeUpstream) -> None:
    """A stream that lasts longer than the deadline runs to its end: heartbeats, not deadlines, keep it honest."""
    upstream.configure(reply="one two three four five six", stream_chunk_delay=0.2)
    response = app.test_client().post("/api/chat", json={"message": "x", "stream": True})
    assert response.status_code == 200
    frames = [json.loads(f[6:]) for f in response.get_data(as_text=True).split("\n\n") if f.startswith("data: ")]
    assert frames[-1]["type"] == "done"
    assert "".join(f["data"] for f in frames if f["type"] == "content") == "one two three four five six"
    assert upstream.wait_for(lambda s: s["streams_completed"] == 1)  # counted just after the last byte
    response = app.test_client().post("/invoke/slow_steps", json={"inputs": {"steps": 5}})
    frames = [json.loads(f[6:]) for f in response.get_data(as_text=True).split("\n\n") if f.startswith("data: ")]
    assert [f["type"] for f in frames] == ["start"] + ["progress"] * 5 + ["done"]


def test_a_deadline_does_not_leak_into_the_next_request_or_a_workflow(app: Flask, upstream: FakeUpstream) -> None:
    """After a request the thread has no deadline, and a task started by a request outlives it."""
    upstream.configure(delay=1.0)  # the task's LLM call outlasts the request that started it (0.5 s)
    client = app.test_client()
    body = {"schema": simple_schema(prompt_node=True), "inputs": {"q": "later"}}
    task_id = client.post("/api/task/run", json=body).json["taskID"]
    assert AsyncHelper.run_async_in_sync(asyncio.sleep(0.6, "no deadline here")) == "no deadline here"
    record = None
    for _ in range(100):
        record = client.get(f"/api/task/result?taskID={task_id}&wait=0.3")
        if record.status_code != 202:
            break
    assert record is not None and record.status_code == 200 and record.json == {"answer": "echo: later"}


def test_wait_is_capped_by_the_deadline(app: Flask, upstream: FakeUpstream) -> None:
    """?wait=30 with a 0.5 s deadline returns while the task (about 3 s) still runs: capped, not refused."""
    upstream.configure(delay=3.0)
    client = app.test_client()
    body = {"schema": simple_schema(prompt_node=True), "inputs": {"q": "slow"}}
    response = client.post("/api/task/run?wait=30", json=body)
    assert response.status_code == 200
    assert response.json["status"] == "processing" and response.json["outputs"] is None
    task_id = response.json["taskID"]
    response = client.get(f"/api/task/result?taskID={task_id}&wait=30")
    assert response.status_code == 202 and response.json == {"taskID": task_id, "status": "processing"}
    for bad in ("soon", "inf", "-1", "61"):  # the view still checks the value given
        assert client.get(f"/api/task/result?taskID={task_id}&wait={bad}").status_code == 400, bad


def test_reserved_threads_refuse_at_once_and_keep_health_checks_answering(upstream: FakeUpstream,
                                                                           tmp_path: Path) -> None:
    """Of 3 request threads, 1 is reserved and none queue: with 2 busy, a third request is 503 at once,
    with a Retry-After computed from the queue; /healthz is not refused."""
    app = make_app(upstream, tmp_path, FLOWBRIDGE_REQUEST_THREADS=3, FLOWBRIDGE_RESERVED_THREADS=1)
    upstream.configure(delay=3.0)  # the checks below must all happen while the two calls run
    results: list[int] = []

    def chat() -> None:
        results.append(app.test_client().post("/api/chat", json={"message": "busy"}).status_code)

    busy = [threading.Thread(target=chat) for _ in range(2)]
    try:
        for thread in busy:
            thread.start()
        assert upstream.wait_for(lambda s: s["in_flight"] == 2, timeout=10)
        client = app.test_client()
        refused = client.post("/api/chat", json={"message": "one more"})
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json["error"]["type"] == "overloaded"
        assert "work slots" in refused.json["error"]["message"]
        assert "FLOWBRIDGE_QUEUE_DEPTH" in refused.json["error"]["message"]
        assert client.get("/healthz").status_code == 200
        assert upstream.stats()["in_flight"] == 2  # still busy: the health check did not wait for them
    finally:
        for thread in busy:
            thread.join(30)
    assert results == [200, 200]
    assert app.test_client().post("/api/chat", json={"message": "free again"}).status_code == 200
    close_llm_client(app)


@pytest.mark.parametrize(("setting", "message"), [
    ({"FLOWBRIDGE_REQUEST_TIMEOUT": 0}, "FLOWBRIDGE_REQUEST_TIMEOUT must be >= 0.001"),
    ({"FLOWBRIDGE_REQUEST_TIMEOUT": "soon"}, "FLOWBRIDGE_REQUEST_TIMEOUT must be a number"),
    ({"FLOWBRIDGE_RESERVED_THREADS": -1}, "FLOWBRIDGE_RESERVED_THREADS must be >= 0"),
    ({"FLOWBRIDGE_RESERVED_THREADS": 4, "FLOWBRIDGE_REQUEST_THREADS": 4},
     r"FLOWBRIDGE_RESERVED_THREADS \+ FLOWBRIDGE_QUEUE_DEPTH must be less than the request threads"),
    ({"FLOWBRIDGE_RESERVED_THREADS": 1, "FLOWBRIDGE_QUEUE_DEPTH": 3, "FLOWBRIDGE_REQUEST_THREADS": 4},
     r"FLOWBRIDGE_RESERVED_THREADS \+ FLOWBRIDGE_QUEUE_DEPTH must be less than .*GUNICORN_THREADS=4\), got 1 \+ 3"),
    ({"FLOWBRIDGE_QUEUE_DEPTH": -1}, "FLOWBRIDGE_QUEUE_DEPTH must be >= 0"),
    ({"FLOWBRIDGE_QUEUE_DEPTH": "many"}, "FLOWBRIDGE_QUEUE_DEPTH must be an integer"),
    ({"FLOWBRIDGE_QUEUE_WAIT": 0}, "FLOWBRIDGE_QUEUE_WAIT must be >= 0.001"),
    ({"FLOWBRIDGE_HEADER_TIMEOUT": "slow"}, "FLOWBRIDGE_HEADER_TIMEOUT must be a number"),
    ({"FLOWBRIDGE_BODY_TIMEOUT": 0}, "FLOWBRIDGE_BODY_TIMEOUT must be >= 0.001"),
])
def test_bad_settings_name_the_variable(upstream: FakeUpstream, tmp_path: Path, setting: dict[str, Any],
                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app(upstream, tmp_path, **setting)


def test_an_oversize_body_is_413_json(app: Flask) -> None:
    client = app.test_client()
    big = "x" * (2 * 1024 * 1024)
    response = client.post("/api/chat", json={"message": big})
    assert response.status_code == 413 and response.json["error"]["type"] == "request_entity_too_large"


def test_set_deadline_cancels_and_disarms_in_every_copy_of_the_context() -> None:
    class Late(Exception):
        pass

    set_deadline(time.monotonic() + 0.2, Late)
    try:
        with pytest.raises(Late):
            AsyncHelper.run_async_in_sync(asyncio.sleep(30))
        copy = contextvars.copy_context()
    finally:
        set_deadline(None)
    # the copy was taken while the deadline was set; clearing it disarmed the copy too
    assert copy.run(AsyncHelper.run_async_in_sync, asyncio.sleep(0.3, "done")) == "done"
    assert AsyncHelper.run_async_in_sync(asyncio.sleep(0, "free")) == "free"
