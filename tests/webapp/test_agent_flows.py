"""A ReAct agent flow over ``/api/flows/<name>``, as JSON and as SSE, against the fake upstream scripted
to call tools (issue 13, acceptance 2 and 4): every way the model can go wrong is a 200 saying what
happened, bad input a 4xx naming it, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ops import BaseAsyncToolOp, C, ToolCall
from tests.fake_upstream import FakeUpstream
# importing the agent's tests registers its tool ops (tests/ops/react_agent_tools.py) with C
from tests.ops.test_react_agent import QUESTION, after, call, script_both_tools, tool_results
from webapp import create_app
from webapp.extensions import close_workflow_runtime

FLOWS = """\
flows:
  agent:
    flow_content: "ReactAgentOp(max_steps=4) << [PopulationLookupOp(), ArithmeticOp()]"
    description: "Answer with a population lookup and arithmetic."
  agent_by_name:
    flow_content: 'ReactAgentOp(max_steps=3, tools=["population_lookup", "arithmetic"])'
    description: "The same agent, its tools named."
  agent_streamed:
    flow_content: "ReactAgentOp(max_steps=4) << [PopulationLookupOp(), ArithmeticOp()]"
    stream: true
"""


@C.register_op()
class BreakUpstreamOp(BaseAsyncToolOp):
    """A tool whose call makes the fake upstream's next answer a 500."""

    upstream: ClassVar[FakeUpstream | None] = None

    def build_tool_call(self) -> ToolCall:
        return ToolCall(description="Break the model's server.")

    async def async_execute(self) -> None:
        assert BreakUpstreamOp.upstream is not None
        BreakUpstreamOp.upstream.push_faults({"status": 500})
        self.set_output("broken")


@pytest.fixture
def app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Flask]:
    flows = tmp_path / "flows.yaml"
    flows.write_text(FLOWS, encoding="utf-8")
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                      "FLOWBRIDGE_TASK_DB": "memory", "FLOWBRIDGE_FLOWS": str(flows)})
    yield app
    close_workflow_runtime(app)


def events_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/event-stream"
    frames = response.get_data(as_text=True).split("\n\n")
    return [json.loads(f[len("data: "):]) for f in frames if f.startswith("data: ")]


def post(client: FlaskClient, flow: str, **inputs: Any) -> Any:
    response = client.post(f"/api/flows/{flow}", json={"inputs": inputs})
    assert response.status_code == 200, response.data
    return response.json


@pytest.mark.parametrize("flow", ["agent", "agent_by_name"])
def test_the_agent_flow_answers_as_json(client: FlaskClient, upstream: FakeUpstream, flow: str) -> None:
    script_both_tools(upstream)
    body = post(client, flow, query=QUESTION)
    assert body["answer"] == "Twice the population of Paris is 4200000." and body["success"] is True
    calls = body["metadata"]["tool_calls"]
    assert [(c["name"], c["status"], c["result"]) for c in calls] == [
        ("population_lookup", "ok", "2100000"), ("arithmetic", "ok", "4200000")]
    assert body["metadata"]["agent"]["stop_reason"] == "answer"
    assert [m["role"] for m in body["metadata"]["messages"]][-2:] == ["tool", "assistant"]


def test_the_agent_flow_streams_one_progress_event_per_tool_call(client: FlaskClient,
                                                                 upstream: FakeUpstream) -> None:
    script_both_tools(upstream)
    response = client.post("/api/flows/agent", json={"inputs": {"query": QUESTION}},
                           headers={"Accept": "text/event-stream"})
    events = events_of(response)
    kinds = [e["type"] for e in events]
    assert kinds == ["start", "progress", "progress", "content", "done"], kinds
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert [(p["name"], p["status"], p["step"]) for p in progress] == [
        ("population_lookup", "ok", 1), ("arithmetic", "ok", 2)]
    assert progress[0]["function"] == {"name": "population_lookup", "arguments": '{"city": "Paris"}'}
    assert events[3]["data"] == "Twice the population of Paris is 4200000."
    assert events[-1]["data"]["answer"] == events[3]["data"]


def test_a_stream_true_agent_flow_streams_without_asking(client: FlaskClient, upstream: FakeUpstream) -> None:
    script_both_tools(upstream)
    events = events_of(client.post("/api/flows/agent_streamed", json={"inputs": {"query": QUESTION}}))
    assert [e["type"] for e in events].count("progress") == 2 and events[-1]["type"] == "done"


def test_a_raising_tool_is_a_200_saying_so(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.script([call("arithmetic", {"a": 1, "b": 0, "operation": "divide"})], match=after())
    upstream.script(["Division by zero."], match=lambda body: "ZeroDivisionError" in "".join(tool_results(body)))
    body = post(client, "agent", query="1/0")
    assert body["answer"] == "Division by zero."
    [record] = body["metadata"]["tool_calls"]
    assert record["status"] == "error" and "ZeroDivisionError: division by zero" in record["error"]


def test_an_unknown_tool_and_malformed_arguments_are_200s_saying_so(client: FlaskClient,
                                                                   upstream: FakeUpstream) -> None:
    upstream.script([{"content": None, "tool_calls": [
        {"name": "weather", "arguments": {"city": "Paris"}},
        {"name": "arithmetic", "arguments": "not json at all"},
        {"name": "population_lookup", "arguments": {}},
    ]}], match=after())
    upstream.script(["Nothing worked."], match=lambda body: len(tool_results(body)) == 3)
    body = post(client, "agent", query="all wrong")
    assert body["answer"] == "Nothing worked." and body["success"] is True
    errors = [c["error"] for c in body["metadata"]["tool_calls"]]
    assert "tool 'weather' was not offered" in errors[0]
    assert "not a JSON object" in errors[1] and "'city' is required" in errors[2]


def test_malformed_calls_stream_as_progress_events_too(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.script([call("arithmetic", "{broken")], match=after())
    upstream.script(["Gave up."], match=lambda body: len(tool_results(body)) == 1)
    events = events_of(client.post("/api/flows/agent", json={"inputs": {"query": "broken"}},
                                   headers={"Accept": "text/event-stream"}))
    [progress] = [e["data"] for e in events if e["type"] == "progress"]
    assert progress["status"] == "error" and "not a JSON object" in progress["error"]
    assert events[-1]["type"] == "done" and events[-1]["data"]["answer"] == "Gave up."


def test_a_model_that_never_stops_is_a_bounded_200(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.script([call("population_lookup", {"city": "Lyon"})], repeat=True)
    body = post(client, "agent", query="forever")
    assert body["success"] is False
    assert "stopped after 4 step(s) (max_steps=4) without a final answer" in body["answer"]
    assert body["metadata"]["agent"] == {"op": "react_agent_op", "steps": 4, "max_steps": 4,
                                         "stop_reason": "max_steps"}
    assert [c["status"] for c in body["metadata"]["tool_calls"]] == ["ok"] * 3 + ["not_run"]
    chats = [r for r in upstream.stats()["requests_log"] if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 4


@pytest.mark.parametrize(("inputs", "status", "named"), [
    ({}, 422, "give 'query' or 'messages'"),
    ({"query": 5}, 400, "'query' must be string"),
    ({"messages": ["hi"]}, 422, "messages[0] must be an object"),
])
def test_bad_input_is_a_4xx_naming_it(client: FlaskClient, inputs: dict[str, Any], status: int, named: str) -> None:
    response = client.post("/api/flows/agent", json={"inputs": inputs})
    assert response.status_code == status, response.data
    assert named in response.json["error"]["message"]


def test_the_model_server_failing_mid_loop_is_a_502(client: FlaskClient, upstream: FakeUpstream) -> None:
    BreakUpstreamOp.upstream = upstream
    upstream.script([call("break_upstream", {})], match=after())
    response = client.post("/api/flows", json={"flow_content": "ReactAgentOp() << [BreakUpstreamOp()]",
                                               "inputs": {"query": "break it"}})
    assert response.status_code == 502, response.data
    assert response.json["error"]["type"] == "upstream_error"
