"""One validation (``WorkflowRuntime.validate``) behind every way in: ``TaskValidateAPI``,
``POST /api/task/validate`` and the Workflows page give the same errors and warnings (issue 12)."""

from __future__ import annotations

import asyncio
import html
import json
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from webapp.extensions import get_workflow_runtime
from workflow import TaskValidateAPI

#: A start that requires ``q`` (not given: FlowGram's error), a node type nothing runs (our warning),
#: and the kernel format of seeds/003 (normalised, with a warning).
SCHEMA = {
    "nodes": [
        {"id": "start", "type": "start", "position": {"x": 0, "y": 0}, "ports": {"out": [{"id": "out"}]},
         "data": {"title": "Teleport", "outputs": {"type": "object", "required": ["q"],
                                                   "properties": {"q": {"type": "string"}}}}},
        {"id": "tp", "type": "teleport", "position": {"x": 200, "y": 0}, "data": {}},
        {"id": "end", "type": "end", "position": {"x": 400, "y": 0}, "data": {}},
    ],
    "edges": [{"source": {"nodeId": "start", "portId": "out"}, "target": {"nodeId": "tp", "portId": "in"}},
              {"source": {"nodeId": "tp", "portId": "out"}, "target": {"nodeId": "end", "portId": "in"}}],
}
ERRORS = ['JSON Schema validation failed: Missing required property "q" at root']


def page_lists(page: str, list_id: str) -> list[str]:
    found = re.search(rf'<ul class="[^"]*" id="{list_id}">(.*?)</ul>', page, re.S)
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", found.group(1))] if found else []


def test_the_api_function_the_route_and_the_page_agree(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        runtime = get_workflow_runtime(app)
    expected = runtime.validate(SCHEMA, {})
    assert expected.errors == ERRORS
    assert [w.split(" (")[0] for w in expected.warnings] == [
        "The schema was normalised to FlowGram's format", "No executor found for node type teleport: running it will fail"]
    assert expected.unknown_types == ["teleport"] and not expected.runnable

    # the default runtime answers TaskValidateAPI: another runtime, the same one validation
    from_api: dict[str, Any] = asyncio.run(TaskValidateAPI({"schema": json.dumps(SCHEMA), "inputs": {}}))
    from_route = client.post("/api/task/validate", json={"schema": json.dumps(SCHEMA), "inputs": {}}).get_json()
    assert from_api == from_route == {"valid": False, "errors": ERRORS, "warnings": expected.warnings}

    page = client.get("/workflows").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    page = client.post("/workflows", data={"csrf_token": token, "action": "validate",
                                           "workflow_schema": json.dumps(SCHEMA)}).get_data(as_text=True)
    assert page_lists(page, "validation-errors") == ERRORS
    assert page_lists(page, "validation-warnings") == expected.warnings


def test_the_run_route_reads_the_kernel_format_as_the_api_functions_do(client: FlaskClient) -> None:
    """seeds/003's kernel example schema (start and end only) through ``POST /api/task/run``."""
    schema = {"nodes": [SCHEMA["nodes"][0] | {"data": {}}, SCHEMA["nodes"][2]],
              "edges": [{"source": {"nodeId": "start", "portId": "out"}, "target": {"nodeId": "end", "portId": "in"}}]}
    answer = client.post("/api/task/run?wait=30", json={"schema": json.dumps(schema), "inputs": {"m": "hi"}}).get_json()
    assert answer["status"] == "succeeded" and answer["outputs"] == {}
    report = client.get(f"/api/task/report?taskID={answer['taskID']}").get_json()
    assert [m["message"].split(" (")[0] for m in report["messages"]["warning"]] == [
        "The schema was normalised to FlowGram's format"]
