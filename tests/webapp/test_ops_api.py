"""/api/ops and /api/flows through the app, against the fake upstream."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ops import FlowConfigError
from tests.fake_upstream import FakeUpstream
from webapp import create_app


@pytest.fixture
def app(upstream: FakeUpstream) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_list_ops_gives_openai_tool_schemas(client: FlaskClient) -> None:
    ops = {op["name"]: op for op in client.get("/api/ops").json["ops"]}
    echo = ops["echo_tool"]
    assert echo["class"] == "EchoToolOp"
    assert echo["tool"]["type"] == "function"
    assert echo["tool"]["function"]["parameters"]["required"] == ["text"]
    assert "chat" in ops and ops["chat"]["description"]


def test_run_echo_tool(client: FlaskClient) -> None:
    response = client.post("/api/ops/echo_tool", json={"inputs": {"text": "hi"}})
    assert response.status_code == 200
    assert response.json["answer"] == "Echo: hi" and response.json["success"] is True
    assert response.json["outputs"] == {"echo_tool_result": "Echo: hi"}
    # the class name works too
    assert client.post("/api/ops/EchoToolOp", json={"inputs": {"text": "x"}}).json["answer"] == "Echo: x"


@pytest.mark.parametrize(("body", "status", "named"), [
    ({"inputs": {}}, 400, "'text' is required"),
    ({"inputs": {"text": 5}}, 400, "'text' must be string"),
    ({}, 400, "inputs: Field required"),
    ({"inputs": [1]}, 400, "inputs: Input should be a valid dictionary"),
    ({"inputs": {"text": "a"}, "extra": 1}, 400, "extra: Extra inputs are not permitted"),
    ({"inputs": {"text": "a", "response": "x"}}, 400, "'response' cannot be used"),
])
def test_bad_op_inputs(client: FlaskClient, body: dict, status: int, named: str) -> None:
    response = client.post("/api/ops/echo_tool", json=body)
    assert response.status_code == status
    assert named in response.json["error"]["message"]


def test_unknown_op_and_flow_are_404(client: FlaskClient) -> None:
    for url in ("/api/ops/nope", "/api/flows/nope"):
        response = client.post(url, json={"inputs": {}})
        assert response.status_code == 404 and "nope" in response.json["error"]["message"]


def test_op_calling_the_llm(client: FlaskClient, upstream: FakeUpstream) -> None:
    response = client.post("/api/ops/chat", json={"inputs": {"query": "Say hi"}})
    assert response.status_code == 200, response.json
    assert response.json["answer"] == "echo: Say hi"


def test_llm_failures_map_like_chat(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 500})
    response = client.post("/api/ops/chat", json={"inputs": {"query": "x"}})
    assert response.status_code == 502 and response.json["error"]["type"] == "upstream_error"
    upstream.push_faults({"kind": "hang", "seconds": 2})
    slow = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                       "LLM_TIMEOUT": "0.2"})
    response = slow.test_client().post("/api/flows/chat", json={"inputs": {"query": "x"}})
    assert response.status_code == 504


def test_flows_list_and_run(client: FlaskClient) -> None:
    flows = {flow["name"]: flow for flow in client.get("/api/flows").json["flows"]}
    assert "chat_summary" in flows and flows["chat_summary"]["description"]
    response = client.post("/api/flows/chat", json={"inputs": {"query": "hello"}})
    assert response.status_code == 200
    assert response.json == {"answer": "echo: hello", "success": True, "metadata": response.json["metadata"]}
    # flowllm posts the inputs at the top level
    assert client.post("/api/flows/echo", json={"text": "top"}).json["answer"] == "Echo: top"


def test_flow_input_validation(client: FlaskClient) -> None:
    response = client.post("/api/flows/echo", json={"inputs": {}})
    assert response.status_code == 400 and "'text' is required" in response.json["error"]["message"]


def test_a_flow_expression_that_is_not_ops_is_rejected(upstream: FakeUpstream, tmp_path: Path) -> None:
    for expression in ("__import__('os').system('id')", "ChatOp().__class__"):
        path = tmp_path / "flows.yaml"
        path.write_text(f'flows:\n  evil:\n    flow_content: "{expression}"\n')
        with pytest.raises(FlowConfigError, match="flow 'evil'"):
            create_app({"LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_FLOWS": str(path)})


@pytest.mark.parametrize("expression", ["__import__('os').system('id')", "ChatOp().__class__",
                                        "open('/etc/passwd')", "ChatOp(x=__import__('os'))"])
def test_adhoc_flow_expressions_that_are_not_ops_are_400(client: FlaskClient, expression: str) -> None:
    response = client.post("/api/flows", json={"flow_content": expression, "inputs": {}})
    assert response.status_code == 400
    assert "invalid flow_content" in response.json["error"]["message"]


def test_adhoc_flow_runs(client: FlaskClient) -> None:
    response = client.post("/api/flows", json={"flow_content": "EchoToolOp()", "inputs": {"text": "adhoc"}})
    assert response.status_code == 200 and response.json["answer"] == "Echo: adhoc"
