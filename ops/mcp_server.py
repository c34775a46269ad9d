"""Our tool ops and tool flows as an MCP server (the official ``mcp`` SDK's low-level ``Server``).

Every registered op that is a :class:`~ops.tool_op.BaseAsyncToolOp` is an MCP tool named as in
``GET /api/ops`` (its ``tool_call.name``), and so is every flow that declares a tool schema (its
``input_schema``, or a single tool op as its root). The input schema is the ``ToolCall``'s JSON
schema, the one offered to models. A call checks the arguments as ``POST /api/ops/<name>`` does,
runs the op with :func:`ops.compose.run_op` (a flow with :meth:`Flow.run`) on a fresh op and
context, and answers with the answer as text plus ``{"answer", "outputs", "success"}`` as
structured content.

Errors never end the connection: an unknown tool is the protocol error ``INVALID_PARAMS`` naming
it (the MCP specification puts "tool not found" there); arguments that do not fit the schema, and
an op that fails, are a tool result with ``is_error`` whose text says what is wrong, so a model
can correct itself.

:func:`build_server` is transport-free; ``flowbridge mcp`` serves it on stdio
(:mod:`webapp.cli.mcp`) and the web app at ``/mcp`` (:mod:`webapp.routes.mcp`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from .base import BaseOp
from .compose import run_op
from .context import FlowContext
from .flows import Flow
from .services import C
from .tool_call import ToolCall
from .tool_op import BaseAsyncToolOp

__all__ = ["McpTarget", "build_server", "call_tool", "list_targets", "to_mcp_tool"]

logger = logging.getLogger(__name__)

#: Context fields a tool's arguments may not overwrite (as ``/api/ops`` refuses them).
RESERVED_ARGUMENTS = frozenset({"flow_id", "response", "stream_queue", "stream"})
#: The server's name in the MCP handshake.
SERVER_NAME = "flowbridge"


@dataclass(frozen=True)
class McpTarget:
    """One tool: its schema and how to run it on a context (returns the structured result)."""

    kind: str  # "op" or "flow"
    tool_call: ToolCall
    run: Callable[[FlowContext], Awaitable[dict[str, Any]]]


def _op_target(cls: type[BaseOp]) -> McpTarget | None:
    try:
        op = cls()
    except Exception as exc:  # an op that needs arguments is not offered as a tool
        logger.debug("op %s is not an MCP tool: %s", cls.__name__, exc)
        return None
    if not isinstance(op, BaseAsyncToolOp) or not getattr(op, "exposed_as_tool", True):
        return None
    try:
        tool_call = op.tool_call
    except Exception as exc:
        logger.warning("op %s has no usable tool schema, not offered over MCP: %s", cls.__name__, exc)
        return None

    async def run(context: FlowContext) -> dict[str, Any]:
        fresh = cls()  # one op per call: tool ops keep input_dict/output_dict on the instance
        await run_op(fresh, context)
        response = context.response
        outputs = dict(fresh.output_dict) if isinstance(fresh, BaseAsyncToolOp) else {}
        return {"answer": response.answer, "outputs": outputs, "success": response.success}

    return McpTarget("op", tool_call, run)


def _flow_target(flow: Flow) -> McpTarget | None:
    """A flow is a tool when it declares inputs or its root is one tool op."""
    try:
        declares = bool(flow.spec.input_schema) or isinstance(flow.build(), BaseAsyncToolOp)
        tool_call = flow.tool_call
    except Exception as exc:
        logger.warning("flow %s has no usable tool schema, not offered over MCP: %s", flow.name, exc)
        return None
    if not declares:
        return None

    async def run(context: FlowContext) -> dict[str, Any]:
        response = await flow.run(context)
        return {"answer": response.answer, "outputs": {}, "success": response.success}

    return McpTarget("flow", tool_call, run)


def list_targets() -> dict[str, McpTarget]:
    """Every tool op, then every tool flow, by tool name; a flow named like an op tool is skipped."""
    targets: dict[str, McpTarget] = {}
    for _, cls in sorted(C.ops.items()):
        target = _op_target(cls)
        if target is not None:
            targets.setdefault(target.tool_call.name, target)
    for name, flow in sorted(C.flows.items()):
        target = _flow_target(flow)
        if target is None:
            continue
        if name in targets:  # usually the flow of that one op (flow "chat": ChatOp())
            logger.debug("flow %s is not offered over MCP: an op tool has that name", name)
            continue
        targets[name] = target
    return targets


def to_mcp_tool(tool_call: ToolCall) -> types.Tool:
    """``ToolCall`` → MCP ``Tool`` (name, description, input JSON schema)."""
    return types.Tool(name=tool_call.name, description=tool_call.description or None,
                      input_schema=tool_call.input_json_schema())


def _error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


async def call_tool(name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
    """Run the tool ``name``; see the module docstring for what errors become.

    :raises MCPError: ``INVALID_PARAMS`` for a tool that does not exist.
    """
    targets = list_targets()
    target = targets.get(name)
    if target is None:
        known = ", ".join(sorted(targets)) or "none"
        raise MCPError(types.INVALID_PARAMS, f"unknown tool {name!r}; tools: {known}")
    arguments = dict(arguments or {})
    problems = target.tool_call.validate_inputs(arguments)
    reserved = sorted(RESERVED_ARGUMENTS & set(arguments))
    if reserved:
        problems.append(f"{', '.join(map(repr, reserved))} cannot be used as argument names")
    if problems:
        return _error_result(f"invalid arguments for tool {name}: " + "; ".join(problems))
    try:
        result = await target.run(FlowContext(**arguments))
    except ValueError as exc:  # the op cannot work with this input (the API's 422)
        return _error_result(f"tool {name} failed: {exc}")
    except Exception as exc:  # an op's bug must not end the MCP connection
        logger.exception("MCP tool %s failed", name)
        return _error_result(f"tool {name} failed: {type(exc).__name__}: {exc}")
    return _success_result(result)


def _success_result(result: dict[str, Any]) -> types.CallToolResult:
    answer = result.get("answer")
    text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False, default=str)
    structured = json.loads(json.dumps(result, ensure_ascii=False, default=str))  # JSON values only
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured,
                                is_error=not result.get("success", True))


async def _on_list_tools(_ctx: Any, _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[to_mcp_tool(t.tool_call) for _, t in sorted(list_targets().items())])


async def _on_call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    return await call_tool(params.name, params.arguments)


def _input_schema(name: str) -> dict[str, Any] | None:
    target = list_targets().get(name)
    return None if target is None else target.tool_call.input_json_schema()


def build_server() -> Server[Any]:
    """The MCP server of the ops and flows registered in ``C`` (read at each request, not frozen here)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("flowbridge")
    except PackageNotFoundError:
        ours = ""
    return Server(SERVER_NAME, version=ours, on_list_tools=_on_list_tools, on_call_tool=_on_call_tool,
                  get_tool_input_schema=_input_schema,
                  instructions="flowbridge's tool ops and flows; each call runs one op or flow.")
