"""Workflow inputs no task can hold are 400s naming the problem, and leave no task behind (issue 11)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from tests.webapp.test_tasks_api import simple_schema
from webapp import create_app


@pytest.fixture
def app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": str(tmp_path / "t.db")})
    yield app
    from webapp.extensions import close_workflow_runtime

    close_workflow_runtime(app)


# client: tests/webapp/conftest.py


def deep_schema_text(levels: int) -> str:
    schema = simple_schema()
    value: Any = "bottom"
    for _ in range(levels):
        value = {"a": value}
    schema["nodes"][0]["data"]["extra"] = value
    return json.dumps(schema)


@pytest.mark.parametrize("body, named", [
    ({"schema": deep_schema_text(500), "inputs": {"q": "x"}}, "nested too deeply"),
    ({"schema": "[" * 3000 + "]" * 3000, "inputs": {"q": "x"}}, "nested too deeply"),
    ({"schema": json.dumps(simple_schema()), "inputs": {"q": "\ud800"}}, "surrogate"),
    ({"schema": json.dumps(simple_schema()).replace('"q"', '"\\ud800"', 1), "inputs": {"q": "x"}}, "surrogate"),
])
@pytest.mark.parametrize("path", ["/api/task/run", "/api/task/validate"])
def test_a_value_no_task_can_hold_is_a_400_naming_it(client: FlaskClient, path: str, body: dict[str, Any],
                                                     named: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    error = response.json["error"]
    assert named in error["message"] and error["type"]
    assert client.get("/api/tasks").json["total"] == 0  # no ghost task
