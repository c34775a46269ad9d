"""``McpToolOp`` (flowllm's ``BaseMcpOp``) against a real MCP server the tests start: a tiny ``MCPServer``
script (tests/ops/mcp_tiny_server.py) over stdio and over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import functools
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path

import pytest

from ops import C, FlowContext, McpServerError, McpToolOp, OpApp, configure_mcp_servers
from ops.flows import Flow, FlowSpec
from ops.mcp_client import MCP_SERVERS, parse_mcp_servers
from tests.fake_upstream import FakeUpstream
from tests.servers import free_port
from workflow.outbound import check_outbound_url

TINY = Path(__file__).with_name("mcp_tiny_server.py")
STDIO = {"tiny": {"command": [sys.executable, str(TINY)], "timeout": 60}}


@pytest.fixture(autouse=True)
def app(upstream: FakeUpstream) -> Iterator[None]:
    with OpApp(env={"LLM_BASE_URL": upstream.base_url}):
        yield
    configure_mcp_servers({})


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The tiny server over streamable HTTP; its URL once it accepts connections."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(TINY), "--http", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, "the tiny MCP server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the tiny MCP server did not listen within 60s")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(30)


def sync(test: Callable[..., Coroutine[None, None, None]]) -> Callable[..., None]:
    """Run an ``async def`` test on a new event loop (fixtures are the coroutine function's)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _allow(*hosts: str) -> Callable[[str], object]:  # the outbound allow-list check the web app installs
    return lambda url: check_outbound_url(url, hosts)


@sync
async def test_calls_a_tool_over_stdio_with_the_servers_schema() -> None:
    configure_mcp_servers(STDIO)
    op = McpToolOp(mcp_name="tiny", tool_name="add")
    response = await op.async_call(a=2, b=3)
    assert op.output == "5" and response.answer == "5" and response.success
    function = op.tool_call.simple_input_dump()["function"]
    assert function["name"] == "add" and function["description"] == "Add two integers."
    assert function["parameters"]["required"] == ["a", "b"]
    assert function["parameters"]["properties"]["a"]["type"] == "integer"


@sync
async def test_calls_a_tool_over_http_within_the_allow_list(http_server: str) -> None:
    port = http_server.split(":")[2].split("/")[0]
    configure_mcp_servers({"tiny": {"url": http_server}}, url_checker=_allow(f"127.0.0.1:{port}"))
    op = McpToolOp(mcp_name="tiny", tool_name="shout")
    assert not op.tool_call.input_schema["times"].required  # it has a default
    context = FlowContext(text="hi", times=2)
    await op.async_call(context=context)
    assert op.output == "HI HI" and context["mcp_tool_result"] == "HI HI"


def test_urls_outside_the_allow_list_and_without_a_check_are_refused(http_server: str) -> None:
    with pytest.raises(McpServerError, match=r"'tiny'.*127\.0\.0\.1.*not allowed"):
        configure_mcp_servers({"tiny": {"url": http_server}}, url_checker=_allow("example.com"))
    with pytest.raises(McpServerError, match="'tiny': URL servers need an outbound URL check"):
        configure_mcp_servers({"tiny": {"url": http_server}})
    assert MCP_SERVERS.servers == {}  # a refused configuration changes nothing


@sync
async def test_overrides_of_the_schema_as_flowllm() -> None:
    configure_mcp_servers(STDIO)
    op = McpToolOp(mcp_name="tiny", tool_name="shout", input_schema_required=["times"],
                   input_schema_deleted=[])
    assert op.tool_call.input_schema["times"].required
    op = McpToolOp(mcp_name="tiny", tool_name="add", input_schema_optional=["b"], input_schema_deleted=["a"])
    assert list(op.tool_call.input_schema) == ["b"] and not op.tool_call.input_schema["b"].required
    with pytest.raises(McpServerError, match="input_schema_deleted: tool 'add' .* has no input 'c'"):
        McpToolOp(mcp_name="tiny", tool_name="add", input_schema_deleted=["c"]).tool_call


@sync
async def test_failures_are_clear_and_bounded() -> None:
    configure_mcp_servers(STDIO)
    failing = McpToolOp(mcp_name="tiny", tool_name="fail")
    response = await failing.async_call(reason="because")
    assert not response.success  # flowllm's default for this op: the failure is its output, not raised
    assert "answered an error: " in failing.output and "failing on purpose: because" in failing.output
    with pytest.raises(McpServerError, match="failing on purpose"):
        await McpToolOp(mcp_name="tiny", tool_name="fail", raise_exception=True).async_call(reason="x")
    with pytest.raises(McpServerError, match=r"has no tool 'nope' \(tools: add, fail, shout, stall\)"):
        await McpToolOp(mcp_name="tiny", tool_name="nope", raise_exception=True).async_call()
    with pytest.raises(McpServerError, match=r"no MCP server named 'other' \(servers: tiny\)"):
        await McpToolOp(mcp_name="other", tool_name="add", raise_exception=True).async_call(a=1, b=2)
    with pytest.raises(ValueError, match="input 'b' is required"):
        await McpToolOp(mcp_name="tiny", tool_name="add", raise_exception=True).async_call(a=1)
    with pytest.raises(McpServerError, match="set mcp_name and tool_name"):
        await McpToolOp(raise_exception=True).async_call()


@sync
async def test_a_call_is_bounded_by_its_timeout() -> None:
    configure_mcp_servers(STDIO)
    op = McpToolOp(mcp_name="tiny", tool_name="stall", timeout=1, raise_exception=True)
    await MCP_SERVERS.list_tools("tiny")  # the schema first, under the server's own (longer) timeout
    with pytest.raises(McpServerError, match=r"MCP server 'tiny': no answer within 1s while calling stall"):
        await op.async_call(seconds=120)


@sync
async def test_a_server_that_cannot_start_is_an_error_naming_it(tmp_path: Path) -> None:
    configure_mcp_servers({"broken": {"command": [sys.executable, str(tmp_path / "missing.py")], "timeout": 30}})
    with pytest.raises(McpServerError, match="MCP server 'broken'"):
        await McpToolOp(mcp_name="broken", tool_name="add", raise_exception=True).async_call(a=1, b=2)


@sync
async def test_an_unreachable_url_is_an_error_naming_the_server_not_the_url() -> None:
    port = free_port()  # nothing listens there
    configure_mcp_servers({"gone": {"url": f"http://127.0.0.1:{port}/mcp?token=secret-value", "timeout": 30}},
                          url_checker=_allow(f"127.0.0.1:{port}"))
    with pytest.raises(McpServerError, match="MCP server 'gone' failed while listing its tools") as failure:
        await McpToolOp(mcp_name="gone", tool_name="add", raise_exception=True).async_call(a=1, b=2)
    assert "secret-value" not in str(failure.value)


@sync
async def test_a_flow_uses_it_by_name_and_copies_keep_the_binding() -> None:
    configure_mcp_servers(STDIO)
    flow = Flow("adder", FlowSpec(flow_content='McpToolOp(mcp_name="tiny", tool_name="add")'), C.ops)
    assert flow.tool_call.input_schema.keys() == {"a", "b"}
    assert (await flow.run(a=20, b=22)).answer == "42"
    copy = McpToolOp(mcp_name="tiny", tool_name="add", timeout=30).copy()
    assert (copy.mcp_name, copy.tool_name, copy.timeout) == ("tiny", "add", 30)


def test_server_configuration_forms(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text("external_mcp:\n  s:\n    command: python\n    args: [-m, server]\n", encoding="utf-8")
    servers = parse_mcp_servers(str(path))
    assert servers["s"].command == ["python"] and servers["s"].args == ["-m", "server"]
    assert parse_mcp_servers('{"a": {"command": ["x"]}}')["a"].command == ["x"]
    assert parse_mcp_servers({"mcp_servers": {"b": {"url": "https://h/sse"}}})["b"].uses_sse
    with pytest.raises(McpServerError, match="MCP server 'both': .*either url or command"):
        parse_mcp_servers({"both": {"url": "https://h/mcp", "command": ["x"]}})
    with pytest.raises(McpServerError, match="MCP server 'typo': comand: Extra inputs"):
        parse_mcp_servers({"typo": {"comand": ["x"]}})
    with pytest.raises(McpServerError, match="cannot read MCP servers file"):
        parse_mcp_servers(str(tmp_path / "none.yaml"))


def test_a_workflow_op_node_calls_it_with_the_server_named_in_its_params() -> None:
    import json

    from tests.workflow.builders import edge, node, obj, ref
    from workflow import Limits, RuntimeSettings, WorkflowRuntime
    from workflow.store import MemoryTaskStore

    configure_mcp_servers(STDIO)
    schema = {"nodes": [
        node("start_0", "start", outputs=obj(a={"type": "integer"}, b={"type": "integer"})),
        node("op_0", "op", opName="McpToolOp", opParams={"mcp_name": "tiny", "tool_name": "add"},
             inputs=obj(a={"type": "integer"}, b={"type": "integer"}),
             inputsValues={"a": ref("start_0", "a"), "b": ref("start_0", "b")},
             outputs=obj(mcp_tool_result={"type": "string"})),
        node("end_0", "end", inputs=obj(sum={"type": "string"}), inputsValues={"sum": ref("op_0", "mcp_tool_result")}),
    ], "edges": [edge("start_0", "op_0"), edge("op_0", "end_0")]}
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(), limits=Limits(deadline=60))
    try:
        record = runtime.wait(runtime.run(json.dumps(schema), {"a": 40, "b": 2}), 90)
        assert record.status == "succeeded", record.report["messages"]["error"]
        assert record.outputs == {"sum": "42"}
        schema["nodes"][1]["data"]["opParams"] = {"mcp_name": "elsewhere", "tool_name": "add"}
        record = runtime.wait(runtime.run(json.dumps(schema), {"a": 1, "b": 2}), 90)
        assert record.status == "failed"
        assert "no MCP server named 'elsewhere' (servers: tiny)" in json.dumps(record.report["messages"]["error"])
    finally:
        runtime.shutdown()
