"""``?offset=`` and ``?limit=`` of ``GET /api/tasks`` and the ``/tasks`` page, ``?page=`` of a task page:
anything but a whole number in range is a 400 naming the parameter and its range, never a 500 (SQLite's
integers overflow at 2**63). The SQLite store, as in production, through Flask's test client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp import create_app
from webapp.query import MAX_OFFSET

BAD_NUMBERS = ["99999999999999999999", str(2**63), str(MAX_OFFSET + 1), "-1", "-99999999999999999999", "x", "1.5",
               "1e3", "0x10", "١٢", "1_0", "nan", "inf"]
START_END = {"nodes": [{"id": "start_0", "type": "start", "meta": {"position": {"x": 0, "y": 0}},
                        "data": {"outputs": {"type": "object", "properties": {"q": {"type": "string"}}}}},
                       {"id": "end_0", "type": "end", "meta": {"position": {"x": 0, "y": 0}},
                        "data": {"inputs": {"type": "object", "properties": {"a": {"type": "string"}}},
                                 "inputsValues": {"a": {"type": "ref", "content": ["start_0", "q"]}}}}],
             "edges": [{"sourceNodeID": "start_0", "targetNodeID": "end_0"}]}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"), "TESTING": True})
    yield app
    from webapp.extensions import close_workflow_runtime

    close_workflow_runtime(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    response = client.post("/api/task/run?wait=10", json={"schema": json.dumps(START_END), "inputs": {"q": "hi"}})
    assert response.status_code == 200 and response.json["status"] == "succeeded", response.json
    return client


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_api_tasks_refuses_a_bad_offset_or_limit_with_a_400_naming_it(client: FlaskClient, value: str) -> None:
    for name, allowed in (("offset", f"from 0 to {MAX_OFFSET}"), ("limit", "from 1 to 500")):
        response = client.get("/api/tasks", query_string={name: value})
        assert response.status_code == 400, (name, value, response.get_data(as_text=True)[:300])
        error = response.json["error"]
        assert error["type"] == "invalid_request"
        assert error["message"].startswith(f"{name} must be a whole number {allowed}"), error


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_the_tasks_page_answers_a_bad_offset_with_a_400_page(client: FlaskClient, value: str) -> None:
    response = client.get("/tasks", query_string={"offset": value}, headers={"Accept": "text/html"})
    assert response.status_code == 400 and response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    assert "offset must be a whole number from 0 to" in text and "<h1>400</h1>" in text


def test_good_values_and_the_edges_of_the_ranges_work(client: FlaskClient) -> None:
    assert client.get("/api/tasks?limit=500&offset=0").json["total"] == 1
    assert len(client.get("/api/tasks?limit=1").json["tasks"]) == 1
    far = client.get(f"/api/tasks?offset={MAX_OFFSET}")
    assert far.status_code == 200 and far.json["tasks"] == [] and far.json["offset"] == MAX_OFFSET
    assert client.get("/api/tasks?offset=+1&limit=%2050%20").json["limit"] == 50
    empty = client.get("/api/tasks?offset=")  # the spec says a whole number: empty is named, not guessed
    assert empty.status_code == 400 and "offset is empty" in empty.json["error"]["message"]
    assert client.get("/api/tasks?limit=0").status_code == 400 and client.get("/api/tasks?limit=501").status_code == 400
    assert client.get(f"/tasks?offset={MAX_OFFSET}").status_code == 200
    assert client.get("/tasks?offset=0").status_code == 200


def test_a_task_pages_node_list_page_is_checked_too(client: FlaskClient) -> None:
    task_id = client.get("/api/tasks").json["tasks"][0]["taskID"]
    assert client.get(f"/tasks/{task_id}?page=1").status_code == 200
    for value in ("0", "2", "99999999999999999999", "x"):  # two nodes: one page
        response = client.get(f"/tasks/{task_id}?page={value}", headers={"Accept": "text/html"})
        assert response.status_code == 400 and "page must be a whole number from 1 to 1" in response.get_data(as_text=True)


def test_a_whole_number_past_the_range_is_called_out_of_range_not_malformed(client: FlaskClient) -> None:
    for value in ("99999999999999999999", str(2**63), "-5"):
        r = client.get("/api/tasks", query_string={"offset": value})
        assert r.status_code == 400 and "(out of range)" in r.get_json()["error"]["message"], value
    r = client.get("/api/tasks", query_string={"offset": "1.5"})
    assert r.status_code == 400 and "(not a whole number)" in r.get_json()["error"]["message"]
