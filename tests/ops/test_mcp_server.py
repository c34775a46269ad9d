"""``ops.mcp_server``: our tool ops and tool flows as MCP tools, through the ``mcp`` SDK's own ``Client``
connected in process (the stdio and HTTP transports are tests/webapp/test_mcp_*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client, MCPError

from ops import BaseAsyncToolOp, C, OpApp, ToolAttr, ToolCall
from ops.mcp_server import build_server, list_targets
from tests.fake_upstream import FakeUpstream


@C.register_op()
class McpTestDivideOp(BaseAsyncToolOp):
    """Divide two numbers (a test op: it raises for a zero divisor)."""

    def build_tool_call(self) -> ToolCall:
        return ToolCall(description="Divide a by b.", input_schema={
            "a": ToolAttr(type="number", description="dividend"),
            "b": ToolAttr(type="number", description="divisor")})

    async def async_execute(self) -> None:
        if self.input_dict["b"] == 0:
            raise ValueError("cannot divide by zero")
        self.set_output(self.input_dict["a"] / self.input_dict["b"])


@C.register_op()
class McpTestBuggyOp(BaseAsyncToolOp):
    """Has a bug."""

    async def async_execute(self) -> None:
        raise RuntimeError("a bug")


FLOWS = {
    "shout_twice": {"flow_content": 'EchoToolOp() >> EchoToolOp(input_schema_mapping={"text": "echo_tool_result"})',
                    "description": "Echo, then echo the echo.",
                    "input_schema": {"text": {"type": "string", "description": "what to echo"}}},
    "no_schema": {"flow_content": "EchoToolOp() >> EchoToolOp()"},
}


@pytest.fixture(autouse=True)
def app(upstream: FakeUpstream) -> Iterator[None]:
    with OpApp(env={"LLM_BASE_URL": upstream.base_url}, flow=FLOWS):
        yield


def _session(work: Any) -> Any:
    async def run() -> Any:
        async with Client(build_server(), mode="legacy") as client:
            return await work(client)

    return asyncio.run(run())


def test_tool_ops_and_tool_flows_are_listed_with_their_schemas() -> None:
    tools = {tool.name: tool for tool in _session(lambda c: c.list_tools()).tools}
    assert {"echo_tool", "mcp_test_divide", "shout_twice"} <= set(tools)
    assert "mcp_tool" not in tools  # McpToolOp: an external server's tools are not re-offered
    assert "no_schema" not in tools  # a flow whose root is not one tool op and that declares no inputs
    divide = tools["mcp_test_divide"]
    assert divide.description == "Divide a by b."
    assert divide.input_schema == {"type": "object", "required": ["a", "b"], "properties": {
        "a": {"type": "number", "description": "dividend"}, "b": {"type": "number", "description": "divisor"}}}
    assert tools["shout_twice"].input_schema["required"] == ["text"]
    assert set(tools) == set(list_targets())


def test_calling_runs_the_op_and_answers_text_and_structured_content() -> None:
    result = _session(lambda c: c.call_tool("mcp_test_divide", {"a": 7, "b": 2}))
    assert not result.is_error and result.content[0].text == "3.5"
    assert result.structured_content == {"answer": 3.5, "outputs": {"mcp_test_divide_result": 3.5},
                                         "success": True}
    flow = _session(lambda c: c.call_tool("shout_twice", {"text": "hi"}))
    assert not flow.is_error and flow.content[0].text == "Echo: Echo: hi"


def test_bad_calls_are_errors_naming_the_problem_and_the_connection_goes_on() -> None:
    async def work(client: Client) -> dict[str, Any]:
        results: dict[str, Any] = {}
        try:
            await client.call_tool("no_such_tool", {})
        except MCPError as exc:
            results["unknown"] = exc
        results["missing"] = await client.call_tool("mcp_test_divide", {"a": 1})
        results["wrong_type"] = await client.call_tool("mcp_test_divide", {"a": "one", "b": 2})
        results["reserved"] = await client.call_tool("echo_tool", {"text": "x", "response": 1})
        results["op_refuses"] = await client.call_tool("mcp_test_divide", {"a": 1, "b": 0})
        results["op_bug"] = await client.call_tool("mcp_test_buggy", {})
        results["still_fine"] = await client.call_tool("echo_tool", {"text": "ok"})
        return results

    results = _session(work)
    assert "unknown tool 'no_such_tool'" in str(results["unknown"]) and "echo_tool" in str(results["unknown"])
    texts = {key: result.content[0].text for key, result in results.items() if key != "unknown"}
    assert all(results[key].is_error for key in ("missing", "wrong_type", "reserved", "op_refuses", "op_bug"))
    assert texts["missing"] == "invalid arguments for tool mcp_test_divide: 'b' is required"
    assert texts["wrong_type"] == "invalid arguments for tool mcp_test_divide: 'a' must be number, got str"
    assert texts["reserved"] == "invalid arguments for tool echo_tool: 'response' cannot be used as argument names"
    assert texts["op_refuses"] == "tool mcp_test_divide failed: cannot divide by zero"
    assert texts["op_bug"] == "tool mcp_test_buggy failed: RuntimeError: a bug"
    assert not results["still_fine"].is_error and texts["still_fine"] == "Echo: ok"


def test_tool_calls_convert_to_and_from_mcp_tools_as_flowllm() -> None:
    tool_call = ToolCall(name="search", description="Search the web.", input_schema={
        "query": ToolAttr(type="string", description="what to look for"),
        "count": ToolAttr(type="integer", description="how many", required=False),
        "mode": ToolAttr(type="string", enum=["fast", "deep"], required=False),
        "tags": ToolAttr(type="array", items={"type": "string"}, required=False)})
    tool = tool_call.to_mcp_tool()
    assert tool.name == "search" and tool.input_schema["required"] == ["query"]
    back = ToolCall.from_mcp_tool(tool)
    assert back.simple_input_dump() == tool_call.simple_input_dump()


def test_schemas_our_tool_attrs_cannot_hold_are_approximated() -> None:
    from mcp_types import Tool

    tool = Tool(name="t", input_schema={"type": "object", "required": ["a"], "properties": {
        "a": {"type": ["null", "integer"]}, "b": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
        "c": {"description": "no type"}, "d": {"type": "number", "default": 1.5}}})
    inputs = ToolCall.from_mcp_tool(tool).input_schema
    assert [inputs[n].type for n in "abcd"] == ["integer", "boolean", "string", "number"]
    assert inputs["a"].required and not inputs["b"].required and inputs["d"].default == 1.5
