"""A ReAct agent in a workflow ``op`` node: its tools named in ``opParams.tools``, its tool calls in
the node's snapshot (issue 13, acceptance 2 and 4), against the fake upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ops import OpApp
from tests.fake_upstream import FakeUpstream
# importing the agent's tests registers its tool ops (tests/ops/react_agent_tools.py) with C
from tests.ops.test_react_agent import QUESTION, after, call, script_both_tools, tool_results
from tests.workflow.builders import edge, node, obj, ref
from workflow import Limits, RuntimeSettings, WorkflowRuntime
from workflow.store import MemoryTaskStore

OP_PARAMS = {"max_steps": 4, "tools": ["population_lookup", {"opName": "ArithmeticOp"}]}


def schema(op_params: dict[str, Any] | None = None) -> str:
    return json.dumps({"nodes": [
        node("start_0", "start", outputs=obj(query={"type": "string"})),
        node("op_0", "op", opName="ReactAgentOp", opParams=OP_PARAMS if op_params is None else op_params,
             inputs=obj(query={"type": "string"}), inputsValues={"query": ref("start_0", "query")},
             outputs=obj(react_agent_result={"type": "string"}, success={"type": "boolean"},
                         tool_calls={"type": "array", "items": {"type": "object"}})),
        node("end_0", "end", inputs=obj(answer={"type": "string"}, success={"type": "boolean"},
                                        calls={"type": "array", "items": {"type": "object"}}),
             inputsValues={"answer": ref("op_0", "react_agent_result"), "success": ref("op_0", "success"),
                           "calls": ref("op_0", "tool_calls")}),
    ], "edges": [edge("start_0", "op_0"), edge("op_0", "end_0")]})


@pytest.fixture
def runtime(upstream: FakeUpstream) -> Iterator[WorkflowRuntime]:
    with OpApp(env={"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0"}):
        runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(), limits=Limits(deadline=60))
        try:
            yield runtime
        finally:
            runtime.shutdown()


def run(runtime: WorkflowRuntime, query: str, op_params: dict[str, Any] | None = None) -> Any:
    return runtime.wait(runtime.run(schema(op_params), {"query": query}), 60)


def agent_snapshot(record: Any) -> dict[str, Any]:
    [snapshot] = record.report["reports"]["op_0"]["snapshots"]
    return snapshot


def test_the_agent_node_answers_with_both_tools_and_shows_its_calls(runtime: WorkflowRuntime,
                                                                    upstream: FakeUpstream) -> None:
    script_both_tools(upstream)
    record = run(runtime, QUESTION)
    assert record.status == "succeeded", record.report["messages"]
    assert record.outputs["answer"] == "Twice the population of Paris is 4200000."
    assert record.outputs["success"] is True
    assert [c["name"] for c in record.outputs["calls"]] == ["population_lookup", "arithmetic"]
    snapshot = agent_snapshot(record)
    assert snapshot["inputs"] == {"query": QUESTION}
    calls = snapshot["outputs"]["tool_calls"]
    assert [(c["name"], c["status"], c["result"]) for c in calls] == [
        ("population_lookup", "ok", "2100000"), ("arithmetic", "ok", "4200000")]
    assert json.loads(calls[1]["arguments"]) == {"a": 2100000, "b": 2, "operation": "multiply"}


def test_a_raising_tool_and_an_unknown_tool_end_in_an_answer(runtime: WorkflowRuntime,
                                                             upstream: FakeUpstream) -> None:
    upstream.script([{"content": None, "tool_calls": [
        {"name": "arithmetic", "arguments": {"a": 1, "b": 0, "operation": "divide"}},
        {"name": "weather", "arguments": {}},
    ]}], match=after())
    upstream.script(["Neither worked."], match=lambda body: len(tool_results(body)) == 2)
    record = run(runtime, "divide and weather")
    assert record.status == "succeeded", record.report["messages"]
    assert record.outputs["answer"] == "Neither worked."
    calls = agent_snapshot(record)["outputs"]["tool_calls"]
    assert [c["status"] for c in calls] == ["error", "error"]
    assert "ZeroDivisionError" in calls[0]["error"] and "was not offered" in calls[1]["error"]


def test_a_model_that_never_stops_ends_the_node_with_success_false(runtime: WorkflowRuntime,
                                                                   upstream: FakeUpstream) -> None:
    upstream.script([call("population_lookup", {"city": "Paris"})], repeat=True)
    record = run(runtime, "forever", {"max_steps": 2, "tools": ["population_lookup"]})
    assert record.status == "succeeded", record.report["messages"]
    assert record.outputs["success"] is False
    assert "max_steps=2" in record.outputs["answer"]
    assert [c["status"] for c in record.outputs["calls"]] == ["ok", "not_run"]


@pytest.mark.parametrize(("op_params", "named"), [
    ({"tools": ["no_such_tool"]}, "op ReactAgentOp: bad opParams: react_agent_op: tools: no op named 'no_such_tool'"),
    ({"max_steps": "5"}, "max_steps must be an integer > 0"),
])
def test_bad_agent_params_fail_the_node_naming_them(runtime: WorkflowRuntime, op_params: dict[str, Any],
                                                    named: str) -> None:
    record = run(runtime, "x", op_params)
    assert record.status == "failed"
    assert named in json.dumps(record.report["messages"]["error"])
