"""``flowbridge mcp``: the ``mcp`` SDK's own client (``stdio_client`` + ``ClientSession``) starts
``python -m webapp.cli mcp`` and lists and calls our tool ops and flows over stdio, against the fake upstream."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client

from tests.fake_upstream import FakeUpstream
from tests.servers import ROOT


def _params(upstream: FakeUpstream, **env: str) -> StdioServerParameters:
    # the SDK passes a minimal environment (PATH, HOME...) plus these
    return StdioServerParameters(command=sys.executable, args=["-m", "webapp.cli", "mcp"], cwd=str(ROOT),
                                 env={"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", **env})


def _with_session(params: StdioServerParameters, work: Any) -> Any:
    async def run() -> Any:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            info = await asyncio.wait_for(session.initialize(), 60)
            assert info.server_info.name == "flowbridge"
            return await asyncio.wait_for(work(session), 60)

    return asyncio.run(run())


def test_lists_and_calls_tool_ops_and_flows_over_stdio(upstream: FakeUpstream) -> None:
    async def work(session: ClientSession) -> dict[str, Any]:
        return {
            "tools": (await session.list_tools()).tools,
            "echo": await session.call_tool("echo_tool", {"text": "over stdio"}),
            "chat": await session.call_tool("chat", {"query": "ping"}),
            "flow": await session.call_tool("echo", {"text": "a flow"}),
        }

    results = _with_session(_params(upstream), work)
    tools = {tool.name: tool for tool in results["tools"]}
    assert {"echo_tool", "chat", "retrieve", "echo", "chat_summary"} <= set(tools)
    assert tools["echo_tool"].input_schema["required"] == ["text"]
    assert results["echo"].content[0].text == "Echo: over stdio" and not results["echo"].is_error
    assert results["echo"].structured_content["outputs"] == {"echo_tool_result": "Echo: over stdio"}
    assert results["chat"].content[0].text == "echo: ping"  # the op called the (fake) model
    assert results["flow"].content[0].text == "Echo: a flow"


def test_bad_calls_are_errors_and_the_server_keeps_serving(upstream: FakeUpstream) -> None:
    async def work(session: ClientSession) -> dict[str, Any]:
        results: dict[str, Any] = {}
        try:
            await session.call_tool("no_such_tool", {"x": 1})
        except MCPError as exc:
            results["unknown"] = str(exc)
        results["missing"] = await session.call_tool("echo_tool", {})
        results["after"] = await session.call_tool("echo_tool", {"text": "still here"})
        return results

    results = _with_session(_params(upstream), work)
    assert "unknown tool 'no_such_tool'" in results["unknown"]
    assert results["missing"].is_error
    assert results["missing"].content[0].text == "invalid arguments for tool echo_tool: 'text' is required"
    assert results["after"].content[0].text == "Echo: still here"


def test_a_bad_server_configuration_is_one_line_on_stderr(upstream: FakeUpstream) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_", "FLOWBRIDGE_"))}
    env.update(LLM_BASE_URL=upstream.base_url, FLOWBRIDGE_MCP_SERVERS='{"s": {"url": "http://10.1.2.3/mcp"}}')
    done = subprocess.run([sys.executable, "-m", "webapp.cli", "mcp"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "flowbridge mcp: error: MCP server 's': host \"10.1.2.3:80\" is not allowed; add it to "
        "FLOWBRIDGE_ALLOWED_HOSTS to let workflows reach it"]
