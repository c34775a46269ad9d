"""``GET /api/task/events``: a workflow task's node status changes as SSE, through real gunicorn.

Two gunicorn masters share one SQLite task database: ``runner`` (2 workers) runs the tasks and
``other`` (another process) streams them, so a test is sure the stream comes from a process that
does not run the task. Streams are read with httpx-sse. The unit tests at the end check
:class:`webapp.task_events.NodeWatch` on hand-made reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer, two_servers_on_one_store
from tests.workflow.builders import edge, node, obj, ref
from webapp.task_events import NodeWatch

PROGRESS_KEYS = {"nodeID", "status", "startTime", "endTime", "timeCost", "current", "total", "percentage", "message"}
ORDER = {"pending": 0, "processing": 1, "succeeded": 2, "failed": 2, "canceled": 2}


# -- schemas ---------------------------------------------------------------------------------------

STRING = {"type": "string"}


def llm(node_id: str) -> dict[str, Any]:
    """An llm node asking the configured (fake) upstream with ``start_0.q``."""
    return node(node_id, "llm", title=node_id.upper(),
                inputs=obj(prompt=STRING, temperature={"type": "number"}),
                inputsValues={"prompt": ref("start_0", "q"), "temperature": {"type": "constant", "content": 0}},
                outputs=obj(result=STRING))


def llm_schema() -> dict[str, Any]:
    """start → llm → end; the answer is the upstream's echo of ``q``."""
    return {"nodes": [node("start_0", "start", title="Ask once", outputs={**obj(q=STRING), "required": ["q"]}),
                      llm("llm_0"),
                      node("end_0", "end", inputs=obj(answer=STRING), inputsValues={"answer": ref("llm_0", "result")})],
            "edges": [edge("start_0", "llm_0"), edge("llm_0", "end_0")]}


def branch_schema() -> dict[str, Any]:
    """start → condition (n == 1 → llm_a, else → llm_b) → end."""
    condition = node("condition_0", "condition", conditions=[
        {"key": "if_1", "value": {"left": ref("start_0", "n"), "operator": "eq",
                                  "right": {"type": "constant", "content": 1}}}])
    end = node("end_0", "end", inputs=obj(a=STRING, b=STRING),
               inputsValues={"a": ref("llm_a", "result"), "b": ref("llm_b", "result")})
    return {"nodes": [node("start_0", "start", outputs=obj(q=STRING, n={"type": "integer"})),
                      condition, llm("llm_a"), llm("llm_b"), end],
            "edges": [edge("start_0", "condition_0"), edge("condition_0", "llm_a", "if_1"),
                      edge("condition_0", "llm_b", "else"), edge("llm_a", "end_0"), edge("llm_b", "end_0")]}


# -- servers and helpers ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory,
            _upstream_server: FakeUpstream) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    with two_servers_on_one_store(tmp_path_factory.mktemp("task_events"), _upstream_server.base_url,
                                  2, 1) as servers:
        yield servers


@pytest.fixture
def runner(servers: tuple[GunicornServer, GunicornServer]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers[0].url, timeout=30) as client:
        yield client


@pytest.fixture
def other(servers: tuple[GunicornServer, GunicornServer]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers[1].url, timeout=30) as client:
        yield client


def submit(client: httpx.Client, schema: dict[str, Any], inputs: dict[str, Any], wait: float = 0) -> str:
    params = {"wait": wait} if wait else {}
    response = client.post("/api/task/run", params=params, json={"schema": json.dumps(schema), "inputs": inputs})
    assert response.status_code == 200, response.text
    return response.json()["taskID"]


def events_of(client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    """Every event of the task's stream, checking the stream headers on the way."""
    with connect_sse(client, "GET", "/api/task/events", params={"taskID": task_id}) as source:
        check_headers(source.response)
        return [json.loads(event.data) for event in source.iter_sse()]


def check_headers(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"


def progress_by_node(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    statuses: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "progress":
            statuses.setdefault(event["data"]["nodeID"], []).append(event["data"]["status"])
    return statuses


def assert_well_formed(events: list[dict[str, Any]], task_id: str) -> None:
    """start first with the task ID, one done/error last, progress events complete and in order."""
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and events[0]["data"]["taskID"] == task_id
    assert kinds.count("done") + kinds.count("error") == 1 and kinds[-1] in ("done", "error")
    assert set(kinds[1:-1]) <= {"progress"}
    progress = [e["data"] for e in events if e["type"] == "progress"]
    for data in progress:
        assert set(data) == PROGRESS_KEYS
        assert 0 <= data["current"] <= data["total"]
        assert data["percentage"] == int(100 * data["current"] / data["total"])
        assert data["message"].endswith(data["status"]) or data["status"] == "failed"
    assert [d["current"] for d in progress] == sorted(d["current"] for d in progress), "current never goes back"
    for statuses in progress_by_node(events).values():
        ranks = [ORDER[s] for s in statuses]
        assert ranks == sorted(set(ranks)), f"statuses out of order or repeated: {statuses}"


# -- streams ---------------------------------------------------------------------------------------

def test_a_live_task_streams_its_nodes_then_done_with_the_outputs(runner: httpx.Client, other: httpx.Client,
                                                                  upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.3)
    task_id = submit(runner, llm_schema(), {"q": "hello"})
    events = events_of(other, task_id)  # another process than the one running the task
    assert_well_formed(events, task_id)
    assert events[0]["data"] == {"taskID": task_id, "status": events[0]["data"]["status"], "title": "Ask once"}
    statuses = progress_by_node(events)
    assert set(statuses) == {"start_0", "llm_0", "end_0"}
    assert all(s[-1] == "succeeded" for s in statuses.values())
    firsts = [e["data"]["nodeID"] for e in events if e["type"] == "progress"]
    assert sorted(set(firsts), key=firsts.index) == ["start_0", "llm_0", "end_0"]
    last = [e for e in events if e["type"] == "progress"][-1]["data"]
    assert (last["current"], last["total"], last["percentage"]) == (3, 3, 100)
    assert last["endTime"] >= last["startTime"] and last["timeCost"] == last["endTime"] - last["startTime"]
    result = runner.get("/api/task/result", params={"taskID": task_id}).json()
    assert result == {"answer": "echo: hello"}
    assert events[-1] == {"type": "done", "data": {"taskID": task_id, "status": "succeeded", "outputs": result}}


def test_a_branch_not_taken_gets_no_events(runner: httpx.Client, other: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.1)
    task_id = submit(runner, branch_schema(), {"q": "x", "n": 1})
    events = events_of(other, task_id)
    assert_well_formed(events, task_id)
    statuses = progress_by_node(events)
    assert set(statuses) == {"start_0", "condition_0", "llm_a", "end_0"}
    assert "llm_b" not in json.dumps(events)
    assert events[-1]["type"] == "done" and events[-1]["data"]["outputs"]["a"] == "echo: x"


def test_a_failing_node_ends_the_stream_with_one_error(runner: httpx.Client, other: httpx.Client,
                                                       upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 400})  # not retried: the llm node fails at once
    task_id = submit(runner, llm_schema(), {"q": "boom"})
    events = events_of(other, task_id)
    assert_well_formed(events, task_id)
    error = events[-1]
    assert error["type"] == "error" and error["error_code"] == "task_failed"
    assert "400" in error["data"] and [m["nodeID"] for m in error["messages"]] == ["llm_0"]
    assert error["data"] == "; ".join(m["message"] for m in error["messages"])
    statuses = progress_by_node(events)
    assert statuses["llm_0"][-1] == "failed" and "end_0" not in statuses
    failed = [e["data"] for e in events if e["type"] == "progress" and e["data"]["status"] == "failed"]
    assert error["messages"][0]["message"] in failed[0]["message"]


def test_an_invalid_task_streams_start_then_its_validation_error(runner: httpx.Client) -> None:
    task_id = submit(runner, llm_schema(), {})
    events = events_of(runner, task_id)
    assert [e["type"] for e in events] == ["start", "error"]
    assert events[0]["data"]["status"] == "failed"
    assert events[1]["error_code"] == "task_failed" and 'Missing required property "q"' in events[1]["data"]


def test_a_canceled_task_ends_with_task_canceled(runner: httpx.Client, other: httpx.Client,
                                                 upstream: FakeUpstream) -> None:
    upstream.configure(delay=3.0)  # the cancel must land while the llm node runs
    task_id = submit(runner, llm_schema(), {"q": "slow"})
    events: list[dict[str, Any]] = []
    with connect_sse(other, "GET", "/api/task/events", params={"taskID": task_id}) as source:
        check_headers(source.response)
        for sse_event in source.iter_sse():
            event = json.loads(sse_event.data)
            events.append(event)
            data = event["data"] if event["type"] == "progress" else {}
            if (data.get("nodeID"), data.get("status")) == ("llm_0", "processing"):
                assert runner.put("/api/task/cancel", json={"taskID": task_id}).json() == {"success": True}
    assert_well_formed(events, task_id)
    assert progress_by_node(events)["llm_0"] == ["processing", "canceled"], "seen live, then canceled"
    assert events[-1]["type"] == "error" and events[-1]["error_code"] == "task_canceled"
    assert events[-1]["data"]


def test_a_late_subscriber_gets_the_whole_history(runner: httpx.Client, other: httpx.Client,
                                                  upstream: FakeUpstream) -> None:
    task_id = submit(runner, llm_schema(), {"q": "late"}, wait=20)
    streams = [events_of(client, task_id) for client in (other, runner, runner, runner, other, runner)]
    events = streams[0]
    assert_well_formed(events, task_id)
    assert events[0]["data"]["status"] == "succeeded"
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert [(p["nodeID"], p["status"], p["current"], p["total"]) for p in progress] == [
        ("start_0", "succeeded", 1, 3), ("llm_0", "succeeded", 2, 3), ("end_0", "succeeded", 3, 3)]
    assert events[-1]["data"]["outputs"] == {"answer": "echo: late"}
    assert all(stream == events for stream in streams), "every worker of both servers tells the same story"


def test_bad_requests_are_json_errors(runner: httpx.Client) -> None:
    missing = runner.get("/api/task/events")
    assert missing.status_code == 400 and missing.headers["content-type"].startswith("application/json")
    assert "taskID" in missing.json()["error"]["message"]
    unknown = runner.get("/api/task/events", params={"taskID": "no-such-task"},
                         headers={"Accept": "text/event-stream"})
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/json")
    assert unknown.json()["error"]["type"] == "not_found" and "no-such-task" in unknown.json()["error"]["message"]


# -- NodeWatch on hand-made reports ------------------------------------------------------------------

def report(**nodes: tuple[str, int | None, int | None]) -> dict[str, Any]:
    reports = {}
    for node_id, (status, started, ended) in nodes.items():
        info: dict[str, Any] = {"id": node_id, "status": status, "timeCost": 0}
        if started is not None:
            info["startTime"] = started
        if ended is not None:
            info["endTime"] = ended
        reports[node_id] = info
    return {"reports": reports, "messages": {"error": []}}


def test_node_watch_sends_each_change_once_oldest_first() -> None:
    watch = NodeWatch({"nodes": [node("a", "start", title="Begin")]})
    first = watch.changes(report(b=("processing", 20, None), a=("succeeded", 10, 20)))
    assert [(e["data"]["nodeID"], e["data"]["status"]) for e in first] == [("a", "succeeded"), ("b", "processing")]
    assert first[0]["data"]["message"] == "Begin: succeeded" and first[1]["data"]["message"] == "b: processing"
    assert watch.changes(report(a=("succeeded", 10, 20), b=("processing", 20, None))) == []
    second = watch.changes(report(a=("succeeded", 10, 20), b=("succeeded", 20, 30)))
    assert [(e["data"]["nodeID"], e["data"]["current"], e["data"]["total"]) for e in second] == [("b", 2, 2)]


def test_node_watch_reports_a_loop_rerun_without_counting_back() -> None:
    watch = NodeWatch()
    watch.changes(report(body=("succeeded", 10, 20)))
    rerun = watch.changes(report(body=("processing", 30, None)))
    assert [(e["data"]["status"], e["data"]["current"]) for e in rerun] == [("processing", 1)]
    assert watch.changes(None) == [] and watch.changes({"reports": []}) == []
