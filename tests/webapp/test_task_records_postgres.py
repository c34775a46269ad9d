"""The web app with ``FLOWBRIDGE_TASK_DB=postgresql://...``: tasks, their pages and op results live in
PostgreSQL; a database restart answers 503 ``store_unavailable`` meanwhile and the app recovers by itself;
two gunicorn masters (no shared files) serve each other's tasks and results through it."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from tests.servers import two_servers_on_one_store
from tests.services import PostgresServer, postgres_database, postgres_server  # noqa: F401 (fixtures)
from tests.webapp.test_tasks_api import simple_schema
from webapp import create_app
from webapp.extensions import close_workflow_runtime, get_result_store
from webapp.results import SQLResultStore

pytestmark = pytest.mark.services


@pytest.fixture
def app(upstream: FakeUpstream, postgres_database: str) -> Iterator[Flask]:  # noqa: F811
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                      "FLOWBRIDGE_TASK_DB": postgres_database})
    yield app
    close_workflow_runtime(app)


def _run(client: FlaskClient | httpx.Client, q: str) -> str:
    body = {"schema": json.dumps(simple_schema(prompt_node=True)), "inputs": {"q": q}}
    response = client.post("/api/task/run?wait=30", json=body)
    assert response.status_code == 200, response.text
    data = response.json() if isinstance(response, httpx.Response) else response.json
    assert data["status"] == "succeeded" and data["outputs"] == {"answer": f"echo: {q}"}
    return data["taskID"]


def _csrf(client: FlaskClient) -> str:
    page = client.get("/ops").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def test_tasks_pages_and_results_live_in_postgres(
        app: Flask, client: FlaskClient, postgres_database: str) -> None:  # noqa: F811
    task_id = _run(client, "hello")
    report = client.get(f"/api/task/report?taskID={task_id}").json
    assert report["workflowStatus"]["status"] == "succeeded" and "llm_0" in report["reports"]
    assert client.get(f"/api/task/result?taskID={task_id}").json == {"answer": "echo: hello"}
    listed = client.get("/api/tasks").json
    assert task_id in json.dumps(listed)
    assert task_id in client.get("/tasks", headers={"Accept": "text/html"}).get_data(as_text=True)
    detail = client.get(f"/tasks/{task_id}", headers={"Accept": "text/html"})
    assert detail.status_code == 200 and "llm_0" in detail.get_data(as_text=True)

    response = client.post("/ops/echo_tool", data={"csrf_token": _csrf(client), "text": "kept in postgres"})
    assert response.status_code == 303
    assert isinstance(get_result_store(app), SQLResultStore)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "kept in postgres" in page

    import psycopg
    with psycopg.connect(postgres_database) as conn:  # really there
        assert conn.execute("SELECT status FROM tasks WHERE task_id = %s", (task_id,)).fetchone() == ("succeeded",)
        assert conn.execute("SELECT COUNT(*) FROM op_results").fetchone() == (1,)


def test_a_database_restart_is_a_503_meanwhile_and_then_recovers(
        client: FlaskClient, postgres_server: PostgresServer) -> None:  # noqa: F811
    task_id = _run(client, "before")
    postgres_server.stop()
    try:
        response = client.get(f"/api/task/report?taskID={task_id}")
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.json["error"]["type"] == "store_unavailable"
        assert "unavailable" in response.json["error"]["message"] and int(response.headers["Retry-After"]) >= 1
        page = client.get("/tasks", headers={"Accept": "text/html"})
        assert page.status_code == 503 and "unavailable" in page.get_data(as_text=True)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json["checks"]["database"]["ok"] is False
    finally:
        postgres_server.start()
    assert client.get(f"/api/task/result?taskID={task_id}").json == {"answer": "echo: before"}  # no app restart
    _run(client, "after")
    assert client.get("/readyz").json["checks"]["database"]["ok"] is True


def test_two_app_servers_share_tasks_and_results_through_postgres(
        tmp_path: Path, upstream: FakeUpstream, postgres_database: str) -> None:  # noqa: F811
    with two_servers_on_one_store(tmp_path, upstream.base_url, 2, 1, task_db=postgres_database) as (first, second), \
            httpx.Client(base_url=first.url, timeout=60) as one, httpx.Client(base_url=second.url, timeout=60) as two:
        ids = [_run(one, f"q{i}") for i in range(3)]
        for task_id, q in zip(ids, ("q0", "q1", "q2")):
            assert two.get("/api/task/result", params={"taskID": task_id}).json() == {"answer": f"echo: {q}"}
            assert two.get("/api/task/report", params={"taskID": task_id}).json()["workflowStatus"]["terminated"]
        listed = json.dumps(two.get("/api/tasks").json())
        assert all(task_id in listed for task_id in ids)
        # a task submitted to the second is canceled through the first (the flag lives in the database)
        body = {"schema": json.dumps(simple_schema(prompt_node=True)), "inputs": {"q": "slow"}}
        started = two.post("/api/task/run", json=body)
        assert started.status_code == 200
        task_id = started.json()["taskID"]
        assert one.put("/api/task/cancel", json={"taskID": task_id}).status_code == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = one.get("/api/task/result", params={"taskID": task_id, "wait": 5})
            if status.status_code != 202:
                break
        assert status.status_code in (200, 409)  # it may have finished before the flag was read
        assert not (tmp_path / "tasks.db").exists()
