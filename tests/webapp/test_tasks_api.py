"""FlowGram's task routes over HTTP: the Flask test client, and real gunicorn with 3 workers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from webapp import create_app


def simple_schema(prompt_node: bool = False) -> dict[str, Any]:
    nodes = [
        {"id": "start_0", "type": "start", "meta": {"position": {"x": 0, "y": 0}},
         "data": {"outputs": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
        {"id": "end_0", "type": "end", "meta": {"position": {"x": 0, "y": 0}},
         "data": {"inputs": {"type": "object", "properties": {"answer": {"type": "string"}}},
                  "inputsValues": {"answer": {"type": "ref", "content": ["llm_0" if prompt_node else "start_0",
                                                                         "result" if prompt_node else "q"]}}}},
    ]
    edges = [{"sourceNodeID": "start_0", "targetNodeID": "end_0"}]
    if prompt_node:
        nodes.append({"id": "llm_0", "type": "llm", "meta": {"position": {"x": 0, "y": 0}}, "data": {
            "inputs": {"type": "object", "properties": {"prompt": {"type": "string"}, "temperature": {"type": "number"}}},
            "inputsValues": {"prompt": {"type": "ref", "content": ["start_0", "q"]},
                             "temperature": {"type": "constant", "content": 0}},
            "outputs": {"type": "object", "properties": {"result": {"type": "string"}}}}})
        edges = [{"sourceNodeID": "start_0", "targetNodeID": "llm_0"}, {"sourceNodeID": "llm_0", "targetNodeID": "end_0"}]
    return {"nodes": nodes, "edges": edges}


@pytest.fixture
def app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": str(tmp_path / "t.db")})
    yield app
    from webapp.extensions import close_workflow_runtime

    close_workflow_runtime(app)


# client: tests/webapp/conftest.py


def test_run_and_wait_in_one_call(client: FlaskClient) -> None:
    body = {"schema": json.dumps(simple_schema(prompt_node=True)), "inputs": {"q": "hello"}}
    response = client.post("/api/task/run?wait=20", json=body)
    assert response.status_code == 200
    data = response.json
    assert data["status"] == "succeeded" and data["outputs"] == {"answer": "echo: hello"}


def test_submit_then_poll(client: FlaskClient) -> None:
    task_id = client.post("/api/task/run", json={"schema": simple_schema(), "inputs": {"q": "x"}}).json["taskID"]
    result = client.get(f"/api/task/result?taskID={task_id}&wait=20")
    assert result.status_code == 200 and result.json == {"answer": "x"}
    report = client.get(f"/api/task/report?taskID={task_id}").json
    assert report["id"] == task_id and report["workflowStatus"]["status"] == "succeeded"
    listed = client.get("/api/tasks?status=succeeded").json
    assert task_id in [t["taskID"] for t in listed["tasks"]] and listed["total"] >= 1


def test_failed_task_result_is_409_with_messages(client: FlaskClient) -> None:
    task_id = client.post("/api/task/run", json={"schema": simple_schema(), "inputs": {}}).json["taskID"]
    response = client.get(f"/api/task/result?taskID={task_id}")
    assert response.status_code == 409
    assert 'Missing required property "q"' in response.json["error"]["message"]


def test_unknown_task_and_bad_requests(client: FlaskClient) -> None:
    assert client.get("/api/task/report?taskID=nope").status_code == 404
    assert client.get("/api/task/result?taskID=nope").status_code == 404
    assert client.put("/api/task/cancel", json={"taskID": "nope"}).json == {"success": False}
    assert client.post("/api/task/run", json={"schema": "{not json", "inputs": {}}).status_code == 400
    assert client.post("/api/task/run", json={"inputs": {}}).status_code == 400
    assert client.get("/api/task/result?taskID=x&wait=abc").status_code == 400


def test_validate(client: FlaskClient) -> None:
    ok = client.post("/api/task/validate", json={"schema": simple_schema(), "inputs": {"q": "x"}}).json
    assert ok == {"valid": True}
    bad = client.post("/api/task/validate", json={"schema": simple_schema(), "inputs": {"q": 1}}).json
    assert bad["valid"] is False and bad["errors"] == ["JSON Schema validation failed: Expected string at q, but got: number"]


def test_http_node_to_a_disallowed_host(client: FlaskClient) -> None:
    schema = simple_schema()
    schema["nodes"].append({"id": "http_0", "type": "http", "meta": {"position": {"x": 0, "y": 0}}, "data": {
        "api": {"method": "GET", "url": {"type": "template", "content": "http://example.invalid/steal"}},
        "body": {"bodyType": "none"}, "headers": {}, "params": {}, "timeout": {"timeout": 1000, "retryTimes": 1},
        "outputs": {"type": "object", "properties": {"body": {"type": "string"}}}}})
    schema["edges"] = [{"sourceNodeID": "start_0", "targetNodeID": "http_0"},
                       {"sourceNodeID": "http_0", "targetNodeID": "end_0"}]
    data = client.post("/api/task/run?wait=20", json={"schema": schema, "inputs": {"q": "x"}}).json
    assert data["status"] == "failed"
    report = client.get(f"/api/task/report?taskID={data['taskID']}").json
    message = report["messages"]["error"][0]
    assert message["nodeID"] == "http_0" and "example.invalid" in message["message"]


def test_info(client: FlaskClient) -> None:
    info = client.get("/info").json
    assert info["runtime"] == "python" and info["time"]


def test_results_survive_a_restart(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = {"LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": str(tmp_path / "keep.db")}
    first = create_app(config)
    task_id = first.test_client().post("/api/task/run?wait=20", json={"schema": simple_schema(),
                                                                       "inputs": {"q": "kept"}}).json["taskID"]
    from webapp.extensions import close_workflow_runtime

    close_workflow_runtime(first)
    second = create_app(config)
    assert second.test_client().get(f"/api/task/result?taskID={task_id}").json == {"answer": "kept"}
    close_workflow_runtime(second)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory,
            _upstream_server: FakeUpstream) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    """Two gunicorn masters on one task database: 3 workers that run tasks, and another process
    that answers about them. Requests to one server land on whichever worker accepts, so the
    second server is how a test is sure another process answers."""
    folder = tmp_path_factory.mktemp("tasks")
    env = {"LLM_BASE_URL": _upstream_server.base_url, "FLOWBRIDGE_TASK_DB": str(folder / "tasks.db")}
    with GunicornServer(env, workers=3, threads=2, log_path=folder / "runner.log") as runner, \
            GunicornServer(env, workers=1, threads=2, log_path=folder / "other.log") as other:
        yield runner, other


def test_tasks_are_shared_by_all_workers(servers: tuple[GunicornServer, GunicornServer],
                                         upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.05)
    runner, other = servers
    task_ids = []
    for i in range(6):
        body = {"schema": json.dumps(simple_schema(prompt_node=True)), "inputs": {"q": f"q{i}"}}
        with requests.post(f"{runner.url}/api/task/run", json=body, timeout=10) as r:
            task_ids.append(r.json()["taskID"])
    for i, task_id in enumerate(task_ids):
        for server in (other, runner):
            params = {"taskID": task_id, "wait": 20}
            with requests.get(f"{server.url}/api/task/result", params=params, timeout=30) as r:
                assert r.status_code == 200 and r.json() == {"answer": f"echo: q{i}"}
            with requests.get(f"{server.url}/api/task/report", params={"taskID": task_id}, timeout=10) as r:
                assert r.json()["workflowStatus"]["status"] == "succeeded"
    with requests.get(f"{other.url}/api/tasks", params={"status": "succeeded"}, timeout=10) as r:
        assert set(task_ids) <= {t["taskID"] for t in r.json()["tasks"]}


def test_cancel_through_another_process(servers: tuple[GunicornServer, GunicornServer],
                                        upstream: FakeUpstream) -> None:
    upstream.configure(delay=3.0)
    runner, other = servers
    body = {"schema": simple_schema(prompt_node=True), "inputs": {"q": "slow"}}
    with requests.post(f"{runner.url}/api/task/run", json=body, timeout=10) as r:
        task_id = r.json()["taskID"]
    with requests.put(f"{other.url}/api/task/cancel", json={"taskID": task_id}, timeout=10) as r:
        assert r.json() == {"success": True}
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        with requests.get(f"{other.url}/api/task/report", params={"taskID": task_id}, timeout=10) as r:
            status = r.json()["workflowStatus"]["status"]
        if status == "canceled":
            break
        time.sleep(0.1)
    assert status == "canceled"
    with requests.get(f"{runner.url}/api/task/result", params={"taskID": task_id}, timeout=10) as r:
        assert r.status_code == 409 and r.json()["error"]["type"] == "task_canceled"


def test_over_capacity_is_503_with_retry_after(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.configure(delay=1.0)
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": "memory",
                      "FLOWBRIDGE_MAX_RUNNING_TASKS": 1})
    client = app.test_client()
    body = {"schema": simple_schema(prompt_node=True), "inputs": {"q": "slow"}}
    first = client.post("/api/task/run", json=body)
    second = client.post("/api/task/run", json=body)
    assert first.status_code == 200
    assert second.status_code == 503 and second.headers["Retry-After"] == "2"
    assert second.json["error"]["type"] == "overloaded"
    from webapp.extensions import close_workflow_runtime

    close_workflow_runtime(app)
