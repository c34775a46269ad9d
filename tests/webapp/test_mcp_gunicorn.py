"""``/mcp`` under real gunicorn (2 gthread workers) with API keys: the ``mcp`` SDK's own client
(``streamable_http_client`` + ``ClientSession``, and ``Client``) lists and calls our tool ops over HTTP
with a key, gets 401 without one; and an ``McpToolOp`` calls a tool of this very server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import requests
from flask import Flask
from mcp import Client, ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

from ops import McpToolOp, OpApp, configure_mcp_servers
from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from webapp import create_app
from workflow.outbound import check_outbound_url

KEY = "mcp-gunicorn-key-0123456789abcdef"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    log_path = tmp_path_factory.mktemp("mcp-gunicorn") / "gunicorn.log"
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_API_KEYS": KEY,
           "FLOWBRIDGE_TASK_DB": str(log_path.parent / "tasks.db"), "GUNICORN_ACCESSLOG": "-"}
    with GunicornServer(env, workers=2, threads=4, log_path=log_path) as server:
        yield server


def _with_session(url: str, key: str | None, work: Any) -> Any:
    async def run() -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http, \
                streamable_http_client(url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await asyncio.wait_for(session.initialize(), 60)
            return await asyncio.wait_for(work(session), 60)

    return asyncio.run(run())


def test_without_a_valid_key_mcp_answers_401(served: GunicornServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-key-000000000000000"}):
        response = requests.post(served.url + "/mcp", json=INITIALIZE, headers={**ACCEPT, **headers}, timeout=30)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(BaseException) as failure:  # the SDK reports the refused handshake (in a group)
        _with_session(served.url + "/mcp", None, lambda session: session.list_tools())
    assert "401" in repr(failure.value) or "error response" in repr(failure.value)


def test_with_the_key_the_sdk_client_lists_and_calls_tool_ops(served: GunicornServer, upstream: FakeUpstream) -> None:
    async def work(session: ClientSession) -> dict[str, Any]:
        results: dict[str, Any] = {"tools": (await session.list_tools()).tools}
        for _ in range(4):  # a new request each: spread over both workers
            results["echo"] = await session.call_tool("echo_tool", {"text": "over http"})
        results["chat"] = await session.call_tool("chat", {"query": "ping"})
        results["missing"] = await session.call_tool("echo_tool", {})
        try:
            await session.call_tool("no_such_tool", {})
        except MCPError as exc:
            results["unknown"] = str(exc)
        return results

    results = _with_session(served.url + "/mcp", KEY, work)
    tools = {tool.name: tool for tool in results["tools"]}
    assert {"echo_tool", "chat", "echo", "chat_summary"} <= set(tools)
    assert tools["echo_tool"].input_schema["required"] == ["text"]
    assert results["echo"].content[0].text == "Echo: over http" and not results["echo"].is_error
    assert results["echo"].structured_content["success"] is True
    assert results["chat"].content[0].text == "echo: ping"
    assert results["missing"].is_error
    assert results["missing"].content[0].text == "invalid arguments for tool echo_tool: 'text' is required"
    assert "unknown tool 'no_such_tool'" in results["unknown"]


def test_the_high_level_client_negotiates_too(served: GunicornServer) -> None:
    async def run() -> Any:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http, \
                Client(streamable_http_client(served.url + "/mcp", http_client=http)) as client:
            return await asyncio.wait_for(client.call_tool("echo_tool", {"text": "auto"}), 60)

    assert asyncio.run(run()).content[0].text == "Echo: auto"


def test_get_and_delete_answer_405(served: GunicornServer) -> None:
    for method in ("GET", "DELETE"):
        response = requests.request(method, served.url + "/mcp", headers={**ACCEPT, "Authorization": f"Bearer {KEY}"},
                                    timeout=30)
        assert response.status_code == 405 and response.headers["Allow"] == "POST"
        assert "stateless" in response.json()["error"]["message"]


def test_an_mcp_tool_op_calls_a_tool_of_this_server(served: GunicornServer, upstream: FakeUpstream,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_TEST_KEY", KEY)  # the header names the variable; the key stays out of the config
    host = served.url.removeprefix("http://")
    with OpApp(env={"LLM_BASE_URL": upstream.base_url}):
        server = {"url": served.url + "/mcp", "headers": {"Authorization": "Bearer {MCP_TEST_KEY}"}}
        configure_mcp_servers({"self": server}, url_checker=lambda url: check_outbound_url(url, [host]))
        try:
            op = McpToolOp(mcp_name="self", tool_name="echo_tool", raise_exception=True)
            response = asyncio.run(op.async_call(text="round trip"))
        finally:
            configure_mcp_servers({})
    assert response.answer == "Echo: round trip"
    assert op.tool_call.input_schema["text"].required


@pytest.fixture
def open_app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Flask]:
    from webapp.extensions import close_llm_client, close_workflow_runtime

    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_SECRET_KEY": "s" * 32,
                      "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db")})
    yield app
    close_workflow_runtime(app)
    close_llm_client(app)


def test_without_keys_configured_no_key_is_needed_and_each_post_stands_alone(open_app: Flask) -> None:
    client = open_app.test_client()
    response = client.post("/mcp", json=INITIALIZE, headers=ACCEPT)
    assert response.status_code == 200 and response.json["result"]["serverInfo"]["name"] == "flowbridge"
    assert "Mcp-Session-Id" not in response.headers  # stateless: no session to keep
    listing = client.post("/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                          headers={**ACCEPT, "MCP-Protocol-Version": "2025-06-18"})
    assert listing.status_code == 200
    assert "echo_tool" in {tool["name"] for tool in listing.json["result"]["tools"]}
    broken = client.post("/mcp", data="{not json", headers={**ACCEPT, "Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json["error"]["code"] == -32700  # JSON-RPC's parse error
