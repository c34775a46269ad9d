"""``McpToolOp``: a tool of an external MCP server as a tool op (flowllm's ``BaseMcpOp``).

```python
search = McpToolOp(mcp_name="search", tool_name="web_search", input_schema_optional=["count"])
answer = await search.async_call(query="flowbridge")      # or attached to an agent: Agent() << [search]
```

The server is one of :data:`ops.mcp_client.MCP_SERVERS` (configured by name, see
:mod:`ops.mcp_client`); the tool's schema is the server's ``list_tools`` entry, with flowllm's
overrides (``input_schema_required`` / ``_optional`` / ``_deleted``). The inputs are read from the
context as for any tool op; the tool's text is the output. A tool that answers ``is_error``, an
unknown server or tool, or a server that cannot be reached is a :class:`McpServerError` — with
``raise_exception=False`` (flowllm's default for this op) it becomes the op's "failed" output,
which is what an agent's model then reads.
"""

from __future__ import annotations

from typing import Any

from async_utils import AsyncHelper

from .mcp_client import MCP_SERVERS, McpServerError, result_text
from .services import C
from .tool_call import ToolCall
from .tool_op import BaseAsyncToolOp

__all__ = ["BaseMcpOp", "McpToolOp"]


@C.register_op()
class McpToolOp(BaseAsyncToolOp):
    """Call a tool of a configured MCP server (set mcp_name and tool_name)."""

    #: an external server's tools are not re-offered by our own MCP server
    exposed_as_tool = False

    def __init__(
        self,
        mcp_name: str = "",
        tool_name: str = "",
        save_answer: bool = True,
        input_schema_required: list[str] | None = None,
        input_schema_optional: list[str] | None = None,
        input_schema_deleted: list[str] | None = None,
        timeout: float | None = None,
        raise_exception: bool = False,
        **kwargs: Any,
    ) -> None:
        self.mcp_name = mcp_name
        self.tool_name = tool_name
        self.input_schema_required = list(input_schema_required or [])
        self.input_schema_optional = list(input_schema_optional or [])
        self.input_schema_deleted = list(input_schema_deleted or [])
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self.timeout = timeout
        super().__init__(save_answer=save_answer, raise_exception=raise_exception, **kwargs)

    @property
    def bound(self) -> bool:
        """True when the op names a server and a tool."""
        return bool(self.mcp_name and self.tool_name)

    def build_tool_call(self) -> ToolCall:
        """The server's schema of the tool, with the overrides; fetched (and cached) on first use."""
        if not self.bound:
            return ToolCall(name=self.short_name, description=(type(self).__doc__ or "").strip())
        tools = MCP_SERVERS.cached_tools(self.mcp_name)
        if tools is None:
            tools = AsyncHelper.run_async_in_sync(MCP_SERVERS.list_tools(self.mcp_name))
        return self._apply_overrides(tools)

    def _apply_overrides(self, tools: dict[str, ToolCall]) -> ToolCall:
        found = tools.get(self.tool_name)
        if found is None:
            raise McpServerError(f"MCP server {self.mcp_name!r} has no tool {self.tool_name!r} "
                                 f"(tools: {', '.join(sorted(tools)) or 'none'})")
        tool_call = found.model_copy(deep=True)
        for label, names in (("input_schema_required", self.input_schema_required),
                             ("input_schema_optional", self.input_schema_optional),
                             ("input_schema_deleted", self.input_schema_deleted)):
            unknown = [n for n in names if n not in tool_call.input_schema]
            if unknown:
                raise McpServerError(f"{label}: tool {self.tool_name!r} of MCP server {self.mcp_name!r} has no "
                                     f"input {unknown[0]!r} (inputs: {', '.join(tool_call.input_schema) or 'none'})")
        for name in self.input_schema_required:
            tool_call.input_schema[name].required = True
        for name in self.input_schema_optional:
            tool_call.input_schema[name].required = False
        for name in self.input_schema_deleted:
            tool_call.input_schema.pop(name)
        return tool_call

    async def async_before_execute(self) -> None:
        if not self.bound:
            raise McpServerError(f"{self.name}: set mcp_name and tool_name (a configured MCP server and its tool)")
        await MCP_SERVERS.list_tools(self.mcp_name)  # fetched on this loop: build_tool_call finds it cached
        await super().async_before_execute()

    async def async_execute(self) -> None:
        result = await MCP_SERVERS.call_tool(self.mcp_name, self.tool_name, self.input_dict, timeout=self.timeout)
        text = result_text(result)
        if getattr(result, "is_error", False):
            raise McpServerError(f"tool {self.tool_name!r} of MCP server {self.mcp_name!r} answered an error: {text}")
        self.set_output(text)


#: flowllm's name
BaseMcpOp = McpToolOp
